//! The library's modules form layers, and every `crate::` path in a module
//! (tests aside) names a module of a lower layer: dependencies point one
//! way. The table below is the one README's ARCHITECTURE section describes;
//! a new module must be placed in it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use regex::Regex;

/// Lowest first. A module may import only modules of the layers before its own.
const LAYERS: &[&[&str]] = &[
    &["exit", "period", "schedule", "generalise"],
    &["pseudonym", "limits"],
    &["rules"],
    &["schema", "audit_record", "coverage"],
    &["step"],
    &["store"],
    &["plan", "walk", "audit", "outcome"],
    &["metrics"],
    &["operate"],
    &["execute"],
    &["commands"],
    &["approval", "trail", "erase"],
    &["review"],
    &["report"],
    &["progress", "daemon"],
    &["demo"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// Every source file of the library, by the top-level module it belongs to.
fn sources() -> BTreeMap<String, Vec<PathBuf>> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut modules: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_str().unwrap().trim_end_matches(".rs").to_string();
        // The binary's own files sit above every layer.
        if !["main", "lib", "manual", "erase_cli"].contains(&module.as_str()) {
            modules.entry(module).or_default().push(file);
        }
    }
    modules
}

/// The top-level modules a file's code (its unit tests aside) names.
fn imports(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    let path = Regex::new(r"crate::([a-z_]+)").unwrap();
    let group = Regex::new(r"crate::\{([^}]*)\}").unwrap();
    let inner = Regex::new(r"\b([a-z_]+)::").unwrap();
    let mut names: Vec<String> = path.captures_iter(code).map(|c| c[1].to_string()).collect();
    for g in group.captures_iter(code) {
        names.extend(inner.captures_iter(&g[1]).map(|c| c[1].to_string()));
    }
    names
}

#[test]
fn every_import_points_to_a_lower_layer() {
    let mut wrong = Vec::new();
    for (module, files) in sources() {
        let Some(own) = rank(&module) else {
            wrong.push(format!("{module} is in no layer of tests/layers.rs"));
            continue;
        };
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for target in imports(&text) {
                if target == module {
                    continue;
                }
                match rank(&target) {
                    Some(theirs) if theirs < own => {}
                    _ => wrong.push(format!(
                        "{} imports {target}, which is not below {module}",
                        file.display()
                    )),
                }
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
