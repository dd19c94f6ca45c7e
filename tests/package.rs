//! The Debian package, as ops install it: what `dpkg-deb` says is in it,
//! its conffiles and maintainer scripts, `lintian`, and the units inside it
//! verified and scored by `systemd-analyze` against the package's own files.
//!
//! `tests/run` builds the package (`packaging/build-deb`) and passes its
//! path in `GLEMSEL_TEST_DEB`. Without it these tests are skipped, unless
//! `CI=true`, in which case they fail.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The package under test, or `None` to skip.
fn package() -> Option<PathBuf> {
    match std::env::var_os("GLEMSEL_TEST_DEB") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "GLEMSEL_TEST_DEB={} is missing",
                path.display()
            );
            Some(path)
        }
        None => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but GLEMSEL_TEST_DEB is not set (tests/run builds the package)"
            );
            eprintln!("skipping: GLEMSEL_TEST_DEB is not set; tests/run builds the package");
            None
        }
    }
}

fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `dpkg-deb --contents`: each file's path (without the leading `.`), mode
/// and owner.
fn contents(deb: &Path) -> Vec<(String, String, String)> {
    stdout(&run("dpkg-deb", &["--contents", deb.to_str().unwrap()]))
        .lines()
        .filter(|line| !line.starts_with('d'))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields[5].trim_start_matches('.').to_string();
            (path, fields[0].to_string(), fields[1].to_string())
        })
        .collect()
}

/// The package unpacked: the files in `root/`, the control files in
/// `control/`.
fn unpacked(deb: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (root, control) = (dir.path().join("root"), dir.path().join("control"));
    run(
        "dpkg-deb",
        &["-x", deb.to_str().unwrap(), root.to_str().unwrap()],
    );
    run(
        "dpkg-deb",
        &["-e", deb.to_str().unwrap(), control.to_str().unwrap()],
    );
    dir
}

/// The reference rule sets the package ships as examples: rules/*/ but the
/// demo's.
fn example_files() -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    for set in std::fs::read_dir(repo().join("rules")).unwrap() {
        let set = set.unwrap().path();
        if !set.is_dir() || set.ends_with("demo") {
            continue;
        }
        for file in std::fs::read_dir(&set).unwrap() {
            let file = file.unwrap().path();
            let relative = file.strip_prefix(repo().join("rules")).unwrap();
            files.insert(format!("/etc/glemsel/examples/{}", relative.display()));
        }
    }
    files.insert("/etc/glemsel/examples/README.md".into());
    files
}

#[test]
fn the_package_holds_what_ops_expect() {
    let Some(deb) = package() else { return };
    let contents = contents(&deb);
    let paths: BTreeSet<&str> = contents.iter().map(|(p, _, _)| p.as_str()).collect();
    let mut expected: BTreeSet<String> = [
        "/usr/bin/glemsel",
        "/lib/systemd/system/glemsel.service",
        "/lib/systemd/system/glemsel-run.service",
        "/lib/systemd/system/glemsel-run.timer",
        "/etc/glemsel/glemsel.toml",
        "/etc/glemsel/rules/README",
        "/usr/share/glemsel/schema/glemsel.schema.json",
        "/usr/share/glemsel/schema/rules.schema.json",
        "/usr/share/bash-completion/completions/glemsel",
        "/usr/share/zsh/vendor-completions/_glemsel",
        "/usr/share/fish/vendor_completions.d/glemsel.fish",
        "/usr/share/doc/glemsel/copyright",
        "/usr/share/doc/glemsel/changelog.gz",
        "/usr/share/doc/glemsel/changelog.Debian.gz",
        "/usr/share/doc/glemsel/README.md",
        "/usr/share/lintian/overrides/glemsel",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    expected.extend(example_files());
    // A man page per command: the ones `glemsel generate man` writes.
    let man = tempfile::tempdir().unwrap();
    let pages = stdout(&run(
        env!("CARGO_BIN_EXE_glemsel"),
        &["generate", "man", man.path().to_str().unwrap()],
    ));
    for page in pages.lines() {
        let name = Path::new(page).file_name().unwrap().to_str().unwrap();
        expected.insert(format!("/usr/share/man/man1/{name}.gz"));
    }
    let found: BTreeSet<String> = paths.iter().map(|p| p.to_string()).collect();
    let missing: Vec<&String> = expected.difference(&found).collect();
    let unexpected: Vec<&String> = found.difference(&expected).collect();
    assert!(missing.is_empty(), "missing from the package: {missing:?}");
    assert!(
        unexpected.is_empty(),
        "not expected in the package: {unexpected:?}"
    );
    for (path, mode, owner) in &contents {
        let want = if path == "/usr/bin/glemsel" {
            "-rwxr-xr-x"
        } else {
            "-rw-r--r--"
        };
        assert_eq!(
            (mode.as_str(), owner.as_str()),
            (want, "0/0"),
            "{path}: owned by root"
        );
    }
    let size = std::fs::metadata(&deb).unwrap().len();
    eprintln!("{}: {size} bytes, {} files", deb.display(), contents.len());
}

#[test]
fn everything_under_etc_is_a_conffile_and_the_scripts_create_the_user() {
    let Some(deb) = package() else { return };
    let dir = unpacked(&deb);
    let control = dir.path().join("control");
    let conffiles: BTreeSet<String> = std::fs::read_to_string(control.join("conffiles"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let under_etc: BTreeSet<String> = contents(&deb)
        .into_iter()
        .map(|(path, _, _)| path)
        .filter(|path| path.starts_with("/etc/"))
        .collect();
    assert_eq!(conffiles, under_etc);

    let fields = stdout(&run("dpkg-deb", &["--field", deb.to_str().unwrap()]));
    for field in ["Package: glemsel", "Section: admin", "Priority: optional"] {
        assert!(fields.lines().any(|l| l == field), "{field}:\n{fields}");
    }
    let depends = fields.lines().find(|l| l.starts_with("Depends: ")).unwrap();
    assert!(
        depends.contains("adduser") && depends.contains("libc6"),
        "{depends}"
    );
    let version = fields.lines().find(|l| l.starts_with("Version: ")).unwrap();
    assert_eq!(
        version,
        concat!("Version: ", env!("CARGO_PKG_VERSION"), "-1")
    );

    for script in ["postinst", "prerm", "postrm"] {
        let path = control.join(script);
        run("sh", &["-n", path.to_str().unwrap()]);
    }
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system --group"), "{postinst}");
    assert!(postinst.contains("install -d -m 0700 -o root -g root /etc/glemsel/credentials"));
    // Installed, never enabled or started: a person checks the rules first.
    for forbidden in [
        "deb-systemd-invoke start",
        "systemctl enable",
        "systemctl start",
        "systemctl restart",
    ] {
        assert!(!postinst.contains(forbidden), "postinst runs {forbidden}");
    }
    assert!(postinst.contains("deb-systemd-invoke try-restart glemsel.service"));
}

#[test]
fn lintian_reports_no_errors() {
    let Some(deb) = package() else { return };
    let output = Command::new("lintian")
        .args(["--tag-display-limit", "0", "--display-info"])
        .arg(&deb)
        .output()
        .expect("lintian (tests/run installs it)");
    let report = stdout(&output);
    eprintln!(
        "lintian:\n{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let errors: Vec<&str> = report.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(errors.is_empty(), "lintian errors:\n{}", errors.join("\n"));
    // lintian exits 1 on errors (and 2 on its own failure).
    assert!(
        output.status.success(),
        "lintian failed: {:?}",
        output.status
    );
}

/// `systemd-analyze`, which tests/run installs.
fn analyze(args: &[&str], root: &Path) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .env("MANPATH", root.join("usr/share/man"))
        .current_dir(root.join("lib/systemd/system"))
        .output()
        .expect("systemd-analyze")
}

/// The units as installed, with ExecStart= pointing at the packaged binary
/// (`systemd-analyze verify` wants it to exist).
fn installed_units(root: &Path) {
    for unit in ["glemsel.service", "glemsel-run.service"] {
        let path = root.join("lib/systemd/system").join(unit);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("ExecStart=/usr/bin/glemsel "), "{unit}");
        let bin = root.join("usr/bin/glemsel");
        std::fs::write(
            &path,
            text.replace("/usr/bin/glemsel", bin.to_str().unwrap()),
        )
        .unwrap();
    }
}

#[test]
fn the_units_inside_verify_and_are_hardened() {
    let Some(deb) = package() else { return };
    let dir = unpacked(&deb);
    let root = dir.path().join("root");
    installed_units(&root);
    let units = [
        "glemsel.service",
        "glemsel-run.service",
        "glemsel-run.timer",
    ];
    let verify = analyze(&[&["verify"][..], &units].concat(), &root);
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success(), "{stderr}");
    assert!(
        !stderr.contains("glemsel"),
        "warnings about our units:\n{stderr}"
    );
    for service in ["glemsel.service", "glemsel-run.service"] {
        let output = analyze(&["security", "--offline=true", service], &root);
        let text = stdout(&output);
        let score: f64 = text
            .lines()
            .find_map(|line| line.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|score| score.parse().ok())
            .unwrap_or_else(|| panic!("no exposure score:\n{text}"));
        eprintln!("{service}: exposure {score}");
        assert!(score <= 2.0, "{service}: exposure {score}\n{text}");
    }
}

#[test]
fn the_installed_files_work_together() {
    let Some(deb) = package() else { return };
    let dir = unpacked(&deb);
    let root = dir.path().join("root");

    // The packaged binary names the commit this checkout is at.
    let version = stdout(&run(
        root.join("usr/bin/glemsel").to_str().unwrap(),
        &["--version"],
    ));
    let ours = stdout(&run(env!("CARGO_BIN_EXE_glemsel"), &["--version"]));
    assert_eq!(version, ours);

    // Every shipped TOML file names an installed schema that is in the package.
    let mut tomls = vec![root.join("etc/glemsel/glemsel.toml")];
    for file in example_files().iter().filter(|f| f.ends_with(".toml")) {
        tomls.push(root.join(file.trim_start_matches('/')));
    }
    for file in &tomls {
        let text = std::fs::read_to_string(file).unwrap();
        let first = text.lines().next().unwrap();
        let schema = first
            .strip_prefix("#:schema file://")
            .unwrap_or_else(|| panic!("{}: {first}", file.display()));
        assert!(schema.starts_with("/usr/share/glemsel/schema/"), "{first}");
        assert!(
            root.join(schema.trim_start_matches('/')).is_file(),
            "{first}"
        );
    }

    // The installed config loads, with an installed rule set in place.
    let config = std::fs::read_to_string(root.join("etc/glemsel/glemsel.toml")).unwrap();
    assert!(config.contains("rules = \"/etc/glemsel/rules\""));
    let webshop = root.join("etc/glemsel/examples/webshop");
    let config = config.replace("/etc/glemsel/rules", webshop.to_str().unwrap());
    let path = dir.path().join("glemsel.toml");
    std::fs::write(&path, config).unwrap();
    let check = Command::new(root.join("usr/bin/glemsel"))
        .args(["-c", path.to_str().unwrap(), "check", "--offline"])
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");

    // The files the man page lists are in the package, or made by the
    // maintainer scripts and systemd.
    let page = Command::new("zcat")
        .arg(root.join("usr/share/man/man1/glemsel.1.gz"))
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&page.stdout).replace("\\-", "-");
    let files = page
        .split(".SH FILES")
        .nth(1)
        .unwrap()
        .split(".SH ")
        .next()
        .unwrap();
    let postinst = std::fs::read_to_string(dir.path().join("control/postinst")).unwrap();
    let service = std::fs::read_to_string(root.join("lib/systemd/system/glemsel.service")).unwrap();
    let mut listed = 0;
    for line in files.lines().filter(|l| l.starts_with("\\fB")) {
        let path = line.trim_start_matches("\\fB").trim_end_matches("\\fR");
        listed += 1;
        let made = match path {
            "/etc/glemsel/credentials/" => postinst.contains("/etc/glemsel/credentials"),
            "/var/lib/glemsel/" => service.contains("StateDirectory=glemsel"),
            _ => root.join(path.trim_start_matches('/')).exists(),
        };
        assert!(made, "glemsel(1) lists {path}, which nothing installs");
    }
    assert!(listed >= 6, "{files}");
}
