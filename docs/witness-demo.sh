#!/bin/sh
# Three witnesses and an issuer on loopback, in the current directory: a
# period is destroyed and an auditor with a 2-of-3 witness policy and no
# saved checkpoint confirms it; then the operator rewrites the audit log
# (drops one entry, renumbers the rest, restarts so the log is re-signed).
# No witness cosigns the rewritten log: `audit verify` without a policy and
# without a saved checkpoint accepts it, with the policy it refuses it.
#
# Run in an empty directory: BLINDPASS=path/to/blindpass sh docs/witness-demo.sh
# Needs curl and python3 (the rewrite). Ports 18080 and 18381-18383.
set -u
B=${BLINDPASS:-blindpass}
S=http://127.0.0.1:18080
export BLINDPASS_PASSPHRASE="demo passphrase"
echo '$ blindpass serve --data-dir issuer   # first start: creates the log key'
$B serve --data-dir issuer --listen 127.0.0.1:18080 --key-horizon-days 1 >serve0.out 2>&1 & P=$!
until [ -s issuer/audit/log.pub ] && curl -sf $S/healthz >/dev/null; do sleep 0.2; done; kill -INT $P; wait $P
LOGKEY=$(head -1 issuer/audit/log.pub)
for i in 1 2 3; do
  echo "\$ blindpass witness --name w$i.city.example --state w$i --listen 127.0.0.1:1838$i --log-key-file issuer/audit/log.pub &"
  $B witness --name w$i.city.example --state w$i --listen 127.0.0.1:1838$i --log-key-file issuer/audit/log.pub >w$i.out 2>&1 &
  W="${W:-} $!"
done
until [ -s w1/witness.pub ] && [ -s w2/witness.pub ] && [ -s w3/witness.pub ]; do sleep 0.2; done
{ for i in 1 2 3; do echo "witness $(head -1 w$i/witness.pub) http://127.0.0.1:1838$i"; done; echo "quorum 2"; } > policy.txt
echo '$ cat policy.txt'; cat policy.txt
echo '$ blindpass serve --data-dir issuer --witness-policy policy.txt &'
$B serve --data-dir issuer --listen 127.0.0.1:18080 --key-horizon-days 1 --witness-policy policy.txt >serve1.out 2>&1 & P=$!
until curl -sf $S/healthz >/dev/null; do sleep 0.2; done
TOK=$(head -1 issuer/admin.token)
ENDS=$(date -u -d '+10 days' +%Y-%m-%dT%H:%M:%SZ)
ID=$(curl -s -X POST $S/v1/admin/periods -H "Authorization: Bearer $TOK" -H 'content-type: application/json' \
  -d "{\"name\":\"doomed\",\"ends_at\":\"$ENDS\",\"grace_s\":0}" | sed 's/.*"id":"\([0-9a-f]*\)".*/\1/')
echo "\$ curl -X POST $S/v1/admin/periods/$ID/end   # destroyed at once (grace 0)"
curl -s -o /dev/null -w '%{http_code}\n' -X POST $S/v1/admin/periods/$ID/end -H "Authorization: Bearer $TOK"
sleep 2
echo '$ curl -s $S/audit/checkpoint'; curl -s $S/audit/checkpoint
echo '$ blindpass audit --state auditor-a verify --server $S --log-key-file issuer/audit/log.pub --witness-policy policy.txt'
$B audit --state auditor-a verify --server $S --log-key-file issuer/audit/log.pub --witness-policy policy.txt; echo "exit status $?"
echo '--- the operator stops the issuer, drops one entry from audit/entries.log, renumbers the rest and restarts (the log is re-signed with its key)'
kill -INT $P; wait $P
cat > drop_entry.py <<'PY'
import json, struct, sys
# Drops the first service-started entry (a restart the operator would rather
# not show) and renumbers the entries after it.
path = sys.argv[1]
data = open(path, 'rb').read()
entries, o = [], 0
while o < len(data):
    n = struct.unpack('>I', data[o:o+4])[0]; entries.append(json.loads(data[o+4:o+4+n])); o += 4 + n
drop = next(i for i, e in enumerate(entries) if e['event']['kind'] == 'service-started')
print("dropping entry", drop, entries[drop]['event'])
del entries[drop]
out = b''
for i, e in enumerate(entries):
    e['seq'] = i
    b = json.dumps(e, separators=(',', ':')).encode()
    out += struct.pack('>I', len(b)) + b
open(path, 'wb').write(out)
PY
echo '$ python3 drop_entry.py issuer/audit/entries.log'; python3 drop_entry.py issuer/audit/entries.log
$B serve --data-dir issuer --listen 127.0.0.1:18080 --key-horizon-days 1 --witness-policy policy.txt >serve2.out 2>&1 & P=$!
until curl -sf $S/healthz >/dev/null; do sleep 0.2; done; sleep 2
echo '$ grep witness serve2.out'; grep 'witness' serve2.out | sed 's/^[0-9T:.-]*Z *//'
echo '$ curl -s $S/audit/checkpoint'; curl -s $S/audit/checkpoint
echo '$ blindpass audit --state auditor-b verify --server $S --log-key-file issuer/audit/log.pub   # today: no saved checkpoint, no policy'
$B audit --state auditor-b verify --server $S --log-key-file issuer/audit/log.pub; echo "exit status $?"
echo '$ blindpass audit --state auditor-c verify --server $S --log-key-file issuer/audit/log.pub --witness-policy policy.txt'
$B audit --state auditor-c verify --server $S --log-key-file issuer/audit/log.pub --witness-policy policy.txt; echo "exit status $?"
kill -INT $P; wait $P; kill $W; wait
