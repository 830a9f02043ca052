//! Architecture invariants that a grep can check (see docs/architecture.md):
//! each outside dependency is used only by the module that owns it.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Files under src/ that mention `needle` in code (doc comments ignored).
fn users_of(needle: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut users: Vec<String> = files
        .into_iter()
        .filter(|f| {
            fs::read_to_string(f).unwrap().lines().any(|line| {
                let code = line.trim_start();
                !code.starts_with("//") && code.contains(needle)
            })
        })
        .map(|f| f.strip_prefix(root).unwrap().display().to_string())
        .collect();
    users.sort();
    users
}

fn assert_only_under(needle: &str, allowed: &[&str]) {
    let users = users_of(needle);
    assert!(!users.is_empty() || needle.is_empty());
    for user in &users {
        assert!(
            allowed.iter().any(|a| user.starts_with(a)),
            "{user} uses `{needle}`, which only {allowed:?} may"
        );
    }
}

#[test]
fn the_checker_finds_what_is_there() {
    // Shows the scan can fail: sled *is* used, and only where expected.
    assert_eq!(
        users_of("sled::"),
        vec![
            "src/store/mod.rs".to_owned(),
            "src/store/sled_engine.rs".to_owned()
        ]
    );
}

/// The crates named in one `[section]` of Cargo.toml.
fn crates_in_section(manifest: &str, section: &str) -> Vec<String> {
    manifest
        .lines()
        .skip_while(|line| line.trim() != section)
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| line.split_once('=').map(|(name, _)| name.trim().to_owned()))
        .filter(|name| !name.is_empty())
        .collect()
}

#[test]
fn hmac_is_a_test_oracle_only() {
    // crypto::kdf has its own HMAC; the `hmac` crate only checks it.
    let manifest =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let normal = crates_in_section(&manifest, "[dependencies]");
    assert!(normal.contains(&"sha2".to_owned()), "{normal:?}");
    assert!(!normal.contains(&"hmac".to_owned()), "{normal:?}");
    let dev = crates_in_section(&manifest, "[dev-dependencies]");
    assert!(dev.contains(&"hmac".to_owned()), "{dev:?}");
}

#[test]
fn only_http_knows_axum() {
    assert_only_under("axum::", &["src/http/"]);
}

#[test]
fn only_store_knows_sled() {
    assert_only_under("sled::", &["src/store/"]);
}

#[test]
fn only_the_store_knows_postgres() {
    assert_only_under("tokio_postgres::", &["src/store/postgres/"]);
    assert_only_under("deadpool_postgres::", &["src/store/postgres/"]);
}

#[test]
fn only_the_scheduler_knows_the_cron_crate() {
    assert_only_under("tokio_cron_scheduler", &["src/scheduler.rs"]);
}

#[test]
fn only_cli_reads_the_environment_and_argv() {
    assert_only_under("std::env::", &["src/cli/"]);
    assert_only_under("clap::", &["src/cli/"]);
}

#[test]
fn protocol_and_crypto_do_no_io_and_no_logging() {
    for needle in ["std::fs", "tracing::", "std::net", "tokio::"] {
        for user in users_of(needle) {
            assert!(
                !user.starts_with("src/protocol/") && !user.starts_with("src/crypto/"),
                "{user} uses {needle}"
            );
        }
    }
}

#[test]
fn only_the_witness_module_builds_cosignatures() {
    // One implementation of cosignature/v1, used by the witness, the
    // issuer's collector and every client's quorum check.
    assert_only_under("cosignature/v1", &["src/witness/"]);
}

// ---------------------------------------------------------------------------
// The direction between the crate's own modules.
//
// Each top-level module of `src/` has a layer and may import only the
// modules its row names, all of which sit in lower layers; so no import
// points upwards and no two modules import each other. The same table is in
// `src/lib.rs` and `docs/architecture.md`. A row for a module that does not
// exist (yet) is harmless.

/// `(layer, module, may import)`. Higher layers sit on lower ones.
#[rustfmt::skip]
const LAYERS: &[(u8, &str, &[&str])] = &[
    // Faces.
    (9, "cli",       &["bench", "fuzzing", "service", "http", "scheduler", "issuer", "store", "vault", "audit", "wallet", "verifier", "auditor", "client", "witness", "crypto", "protocol", "clock", "ids", "fsutil"]),
    (8, "bench",     &["service", "http", "scheduler", "issuer", "store", "vault", "audit", "wallet", "verifier", "auditor", "client", "witness", "crypto", "protocol", "clock", "ids", "fsutil"]),
    (8, "fuzzing",   &["service", "http", "scheduler", "issuer", "store", "vault", "audit", "wallet", "verifier", "auditor", "client", "witness", "crypto", "protocol", "clock", "ids", "fsutil"]),
    // The server.
    (7, "service",   &["http", "scheduler", "issuer", "store", "vault", "audit", "witness", "crypto", "protocol", "clock", "ids", "fsutil"]),
    (6, "http",      &["scheduler", "issuer", "store", "vault", "audit", "witness", "crypto", "protocol", "clock", "ids", "fsutil"]),
    (5, "scheduler", &["issuer", "store", "vault", "audit", "crypto", "protocol", "clock", "ids", "fsutil"]),
    (4, "issuer",    &["store", "vault", "audit", "crypto", "protocol", "clock", "ids", "fsutil"]),
    (3, "store",     &["crypto", "protocol", "clock", "ids", "fsutil"]),
    (3, "vault",     &["crypto", "protocol", "clock", "ids", "fsutil"]),
    // The client side.
    (7, "wallet",    &["verifier", "auditor", "witness", "client", "audit", "crypto", "protocol", "clock", "ids", "fsutil"]),
    (6, "verifier",  &["auditor", "witness", "client", "crypto", "protocol", "clock", "ids", "fsutil"]),
    (5, "auditor",   &["witness", "client", "audit", "crypto", "protocol", "clock", "ids", "fsutil"]),
    (4, "client",    &["protocol", "ids"]),
    // Shared by both sides: the log, witnesses' cosignatures, the base.
    (4, "witness",   &["audit", "crypto", "protocol", "clock", "ids", "fsutil"]),
    (3, "audit",     &["crypto", "protocol", "clock", "ids", "fsutil"]),
    (2, "crypto",    &["protocol", "ids"]),
    (1, "protocol",  &["ids"]),
    (0, "clock",     &[]),
    (0, "ids",       &[]),
    (0, "fsutil",    &[]),
];

/// Files allowed one import their module's row does not grant, and why.
const EXCEPTIONS: &[(&str, &str)] = &[
    // On-site inspection opens the issuer's data directory read-only.
    ("src/auditor/inspect.rs", "issuer"),
    // Its tests build key commitments the way the issuer does.
    ("src/auditor/memory.rs", "issuer"),
];

/// An import of `to` by `file` (module `from`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    from: String,
    to: String,
    file: String,
}

/// The module path of a file under `src/`: `src/a/b.rs` is `[a, b]`,
/// `src/a/mod.rs` and `src/a.rs` are `[a]`.
fn module_path(rel: &str) -> Vec<String> {
    let trimmed = rel.trim_start_matches("src/").trim_end_matches(".rs");
    let mut parts: Vec<String> = trimmed.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Source text without `//` comments (doc comments included), so prose
/// that names a module is not an import.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            // A `//` inside a string (a URL) also ends the scan of the line;
            // that loses nothing here since no path follows a URL.
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The leading identifier of `s`.
fn ident(s: &str) -> &str {
    let end = s.find(|c: char| !is_ident(c)).unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules that `code` (the file of module `path`) names
/// through `crate::` (also `$crate::` and `use crate::{a, b::c}`), through
/// `blindpass::` (the library, as the binary's files reach it) or through
/// `super::` chains that climb to the crate root.
fn imports_of(path: &[String], code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for root in ["crate::", "blindpass::"] {
        root_imports(root, code, &mut out);
    }
    // `super::` from depth d climbs one level; from `src/a/mod.rs` or
    // `src/a.rs` (depth 1) it reaches the root.
    let mut at = 0;
    while let Some(found) = code[at..].find("super::") {
        let start = at + found;
        at = start + "super::".len();
        // The inner links of a `super::super::` chain are read with its first.
        if code[..start].chars().next_back().is_some_and(is_ident) || code[..start].ends_with("::")
        {
            continue;
        }
        let mut depth = path.len();
        let mut rest = &code[start..];
        while let Some(next) = rest.strip_prefix("super::") {
            depth = depth.saturating_sub(1);
            rest = next;
        }
        if depth == 0 {
            out.push(ident(rest).to_owned());
        }
    }
    out.retain(|m| !m.is_empty() && path.first() != Some(m));
    out.sort();
    out.dedup();
    out
}

/// Adds to `out` the first segment of every path in `code` below `root`
/// (`crate::` or `blindpass::`), grouped imports included.
fn root_imports(root: &str, code: &str, out: &mut Vec<String>) {
    let mut at = 0;
    while let Some(found) = code[at..].find(root) {
        let start = at + found;
        at = start + root.len();
        if code[..start].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let rest = &code[at..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::X, b}`: the first segment of each item at depth 0.
            let mut depth = 0usize;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && is_ident(c) => {
                        out.push(ident(&group[i..]).to_owned());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            out.push(ident(rest).to_owned());
        }
    }
}

/// Every import between different top-level modules in `src/`.
fn edges_in_src() -> Vec<Edge> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut edges = Vec::new();
    for file in files {
        let rel = file.strip_prefix(root).unwrap().display().to_string();
        if rel == "src/lib.rs" || rel == "src/main.rs" {
            continue;
        }
        let path = module_path(&rel);
        let code = code_of(&fs::read_to_string(&file).unwrap());
        for to in imports_of(&path, &code) {
            edges.push(Edge {
                from: path[0].clone(),
                to,
                file: rel.clone(),
            });
        }
    }
    edges.sort();
    edges
}

/// What is wrong with `edges` under [`LAYERS`]: unknown modules, imports
/// the table does not grant (upward or sideways), and circles.
fn violations(edges: &[Edge]) -> Vec<String> {
    let row = |m: &str| LAYERS.iter().find(|(_, name, _)| *name == m);
    let mut out = Vec::new();
    for edge in edges {
        let Some((_, _, allowed)) = row(&edge.from) else {
            out.push(format!(
                "{}: module {} is not in the layer table",
                edge.file, edge.from
            ));
            continue;
        };
        if row(&edge.to).is_none() {
            out.push(format!(
                "{}: imports {}, which is not in the layer table",
                edge.file, edge.to
            ));
        } else if !allowed.contains(&edge.to.as_str())
            && !EXCEPTIONS.contains(&(edge.file.as_str(), edge.to.as_str()))
        {
            out.push(format!(
                "{}: {} must not import {}",
                edge.file, edge.from, edge.to
            ));
        }
    }
    // A circle among the modules, found by depth-first search.
    let mut graph: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for edge in edges {
        graph.entry(&edge.from).or_default().push(&edge.to);
    }
    fn visit<'a>(
        node: &'a str,
        graph: &std::collections::BTreeMap<&'a str, Vec<&'a str>>,
        stack: &mut Vec<&'a str>,
        done: &mut std::collections::BTreeSet<&'a str>,
        out: &mut Vec<String>,
    ) {
        if let Some(at) = stack.iter().position(|n| *n == node) {
            let mut circle = stack[at..].to_vec();
            circle.push(node);
            out.push(format!("circle: {}", circle.join(" → ")));
            return;
        }
        if !done.insert(node) {
            return;
        }
        stack.push(node);
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, stack, done, out);
        }
        stack.pop();
    }
    let mut done = Default::default();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done, &mut out);
    }
    out
}

#[test]
fn the_layer_table_points_downwards_only() {
    for (layer, module, allowed) in LAYERS {
        for target in *allowed {
            let (below, _, _) = LAYERS
                .iter()
                .find(|(_, name, _)| name == target)
                .unwrap_or_else(|| panic!("{module} may import {target}, which has no row"));
            assert!(
                below < layer,
                "{module} (layer {layer}) may import {target} (layer {below})"
            );
        }
    }
}

#[test]
fn every_import_between_modules_follows_the_layer_table() {
    let edges = edges_in_src();
    // The scan sees imports: the service core is imported by its faces.
    assert!(edges.iter().any(|e| e.from == "http" && e.to == "issuer"));
    assert!(
        edges
            .iter()
            .any(|e| e.from == "wallet" && e.to == "protocol")
    );
    let found = violations(&edges);
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn a_planted_upward_import_or_circle_fails() {
    let mut edges = edges_in_src();
    edges.push(Edge {
        from: "issuer".into(),
        to: "wallet".into(),
        file: "src/issuer/planted.rs".into(),
    });
    let found = violations(&edges);
    assert!(
        found
            .iter()
            .any(|v| v == "src/issuer/planted.rs: issuer must not import wallet"),
        "{found:?}"
    );
    // A circle is caught even where the table would grant both edges.
    let circle = [("wallet", "auditor"), ("auditor", "wallet")].map(|(from, to)| Edge {
        from: from.into(),
        to: to.into(),
        file: format!("src/{from}/planted.rs"),
    });
    let found = violations(&circle);
    assert!(found.iter().any(|v| v.starts_with("circle: ")), "{found:?}");
    // A new top-level module must be placed in the table.
    let stray = [Edge {
        from: "gadget".into(),
        to: "ids".into(),
        file: "src/gadget.rs".into(),
    }];
    assert_eq!(violations(&stray).len(), 1);
}

#[test]
fn the_import_parser_reads_every_form() {
    let code = code_of(
        "use crate::{alpha::X, beta};\nuse crate::{\n    gamma::{Y, Z},\n    delta,\n};\n\
         // crate::commented\nfn f() { $crate::eps::g(); super::zeta::h(); super::super::eta::i(); }\n\
         use blindpass::theta::K;\n",
    );
    let top = imports_of(&["m".into()], &code);
    // (`super::super::` is not valid at depth 1; it is read as the root.)
    assert_eq!(
        top,
        [
            "alpha", "beta", "delta", "eps", "eta", "gamma", "theta", "zeta"
        ]
    );
    let nested = imports_of(&["m".into(), "n".into()], &code);
    assert_eq!(
        nested,
        ["alpha", "beta", "delta", "eps", "eta", "gamma", "theta"]
    );
    assert_eq!(module_path("src/a/mod.rs"), ["a"]);
    assert_eq!(module_path("src/a/b.rs"), ["a", "b"]);
}

#[test]
fn lib_rs_and_architecture_md_give_each_module_its_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for doc in ["src/lib.rs", "docs/architecture.md"] {
        let text = fs::read_to_string(root.join(doc)).unwrap();
        // Rows `| <layer> | <modules> | <may import> |`.
        let rows: Vec<(String, String)> = text
            .lines()
            .map(|l| l.trim_start_matches("//!").trim())
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let layer = cells.get(1)?;
                layer.parse::<u8>().ok()?;
                Some((layer.to_string(), cells.get(2)?.to_string()))
            })
            .collect();
        for (layer, module, _) in LAYERS {
            let cell = format!("`{module}`");
            let (found, _) = rows
                .iter()
                .find(|(_, modules)| modules.contains(&cell))
                .unwrap_or_else(|| panic!("{doc} has no layer row for {module}"));
            assert_eq!(
                *found,
                layer.to_string(),
                "{doc} puts {module} in another layer"
            );
        }
    }
}
