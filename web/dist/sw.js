// The service worker: keeps the pages and their assets so that the wallet
// and the verifier open offline. API calls are never cached here (the
// verifier keeps its own copy of the key directory; a session or a pass
// never passes through this cache). The cache name carries a digest of the
// bundle (filled in at build time), so a new build replaces the old copy.

const CACHE = 'blindpass-9025ae55364889ba';
const SHELL = [
  '/', '/verify',
  '/assets/wallet.js', '/assets/verify.js', '/assets/style.css',
  '/assets/zxing_reader.wasm', '/assets/icon.svg',
  '/assets/wallet.webmanifest', '/assets/verify.webmanifest',
];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(names.filter((n) => n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== self.location.origin || !SHELL.includes(url.pathname)) return;
  // Network first (a fresh page when online), the kept copy when offline.
  event.respondWith(
    fetch(event.request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(event.request, copy));
        }
        return response;
      })
      .catch(() => caches.match(event.request, { ignoreSearch: true })),
  );
});
