//! The shell examples in README.md and docs/*.md run as written, against a real
//! switchyard this test starts.
//!
//! The rule, for whoever writes the docs:
//!
//! - Every fenced block names its language. ```` ```sh ```` is commands to run, one per
//!   line (a line ending in `\` goes on; `for`/`if` run to their `done`/`fi`; `#` starts
//!   a comment). ```` ```console ```` is `$ COMMAND` lines, each followed by exactly what
//!   it prints. Output, diagrams and listings are ```` ```text ````. No other shell tag
//!   (`bash`, `shell`), and no command in an indented block.
//! - Every command in an `sh` or `console` block is run, in a shell, with the
//!   `switchyard` under test first on `PATH` and `SWITCHYARD_ADMIN_TOKEN` set, unless
//!   [`SKIPPED`] says why not. It must exit 0 ([`EXIT_CODES`] lists the documented
//!   others) and print no error; a `console` command must print what the block shows.
//! - README.md's commands run against a switchyard on README.md's own example config
//!   (its `yaml` block); those of docs/ against [`DOCS_CONFIG`], the route `iris` the
//!   examples there assume, with a reference built, a prediction captured and one
//!   request under the id the feedback example labels. Each runs in a directory holding
//!   the files the examples name ([`FIXTURES`], and what the scene writes).
//! - On the default ports (data plane 127.0.0.1:8080, admin 127.0.0.1:9901) when both
//!   are free; otherwise on free ports, with `127.0.0.1:8080` and `127.0.0.1:9901`
//!   rewritten in the commands and `SWITCHYARD_ADMIN` set, and the test says so.

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Method;
use serde_json::Value;
use switchyard::demo::model::{Model, ModelServer};

use support::process::{free_port, Switchyard};

/// Commands not run, by how they begin, and why: each needs what a test cannot give.
const SKIPPED: &[(&str, &str)] = &[
    (
        "cargo run --release -- demo",
        "a release build (minutes on two cores), then a 30 s demo; tests/it/demo.rs plays the \
         same story",
    ),
    ("cargo test", "the whole test suite, this test among it"),
    (
        "cargo build --release",
        "minutes on two cores; the commands after it run on the build under test, put at \
         target/release/switchyard",
    ),
    (
        "target/release/switchyard run",
        "serves until stopped; every other command here runs against a `switchyard run` \
         this test starts",
    ),
    (
        "cargo bench",
        "benchmarks: minutes of measurement, with no figure to check",
    ),
    (
        "CARGO_PROFILE_RELEASE_LTO=false",
        "the long fuzz run (500 000 cases a property, hours); `cargo test --test fuzz` runs \
         the same properties",
    ),
    (
        "docker ",
        "needs a Docker daemon and base images from a registry",
    ),
    ("kubectl ", "needs a Kubernetes cluster"),
    ("for pod in $(kubectl ", "needs a Kubernetes cluster"),
    ("install ", "installs into /usr/local and /etc on the host"),
    ("systemctl ", "needs systemd managing the installed unit"),
];

/// Commands whose documented exit code is not 0, and where it is documented.
const EXIT_CODES: &[(&str, i32, &str)] = &[
    (
        "switchyard validate -c broken.yaml",
        1,
        "docs/configuration.md: validate prints every problem and exits 1",
    ),
    (
        "switchyard validate -c typos.yaml",
        1,
        "docs/configuration.md: validate prints every problem and exits 1",
    ),
];

/// What a command's output must say, beyond not being an error: what its doc promises.
const SAYS: &[(&str, &str)] = &[
    ("switchyard status", "progressing"),
    ("switchyard promote", "1 of 4"),
    ("switchyard pause", "paused"),
    ("switchyard resume", "progressing"),
    ("switchyard rollback", "rolled back"),
    ("switchyard retry", "0 of 4"),
    (
        "curl -s -X POST http://127.0.0.1:9901/api/v1/feedback",
        r#""matched": 1,"#,
    ),
    (
        "switchyard baseline --from capture/",
        "wrote baselines/iris.json: 60 requests, 4 features",
    ),
    (
        "switchyard baseline --from train.csv",
        "wrote baselines/iris.json: 30 requests, 4 features",
    ),
    (
        "switchyard baseline --from-live",
        "wrote baselines/iris.json: 50 requests, 4 features",
    ),
    ("target/release/switchyard validate", "ok"),
];

/// Files the examples name, from tests/docs_fixtures/, put in each command's directory.
const FIXTURES: &[&str] = &["broken.yaml", "typos.yaml"];

/// What the examples in docs/ assume: the route `iris` (monitoring.md's `--route iris`)
/// of `iris-v1` and `iris-v2` (capture-and-feedback.md's record), in shadow, monitored,
/// captured unredacted (a reference needs the inputs) and remembering predictions for
/// labels; a reference built from the stable's first 50 requests.
const DOCS_CONFIG: &str = r#"
listen: 127.0.0.1:8080
admin: { listen: 127.0.0.1:9901, token_env: SWITCHYARD_ADMIN_TOKEN }
backends:
  iris-v1: { url: http://127.0.0.1:18001, timeout: 5s }
  iris-v2: { url: http://127.0.0.1:18002, timeout: 5s }
routes:
  - name: iris
    match: { model: iris }
    rollout:
      stable: iris-v1
      candidate: iris-v2
      steps:
        - { weight: 0, mirror: 100, hold: 10m }
        - { weight: 100 }
    monitor:
      sample: 100
      reference: { from: stable, requests: 50 }
    capture: { path: capture/, sample: 100 }
    feedback: { retain: 1h }
state: { path: null }
"#;

/// Where the configs' two backends are: demo model servers take their place.
const BACKENDS: [&str; 2] = ["http://127.0.0.1:18001", "http://127.0.0.1:18002"];

/// The request id docs/capture-and-feedback.md's feedback example labels.
const LABELLED_ID: &str = "0b6f3c2e9d1a4f7e";

/// The token the switchyards of this test require, and the commands are given.
const TOKEN: &str = "docs-examples-token-5f1c9a";

// === the docs, read ===

/// A fenced block: where it starts, its language, its lines (with their numbers).
#[derive(Debug, Clone)]
struct Block {
    file: String,
    line: usize,
    lang: String,
    body: Vec<(usize, String)>,
}

/// A command of a block, from the line it starts on; `output`: what a `console` block
/// shows it printing.
#[derive(Debug, Clone)]
struct Cmd {
    file: String,
    line: usize,
    text: String,
    output: Option<String>,
}

impl Cmd {
    fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, then docs/*.md by name: the order the commands run in.
fn doc_files() -> Vec<String> {
    let mut docs: Vec<String> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    let mut files = vec!["README.md".to_string()];
    files.extend(docs);
    files
}

fn is_fence(line: &str) -> bool {
    line.trim_start().starts_with("```")
}

/// Every fenced block of `file`; an indented command is a problem.
fn blocks(file: &str, problems: &mut Vec<String>) -> Vec<Block> {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if is_fence(line) {
            let lang = line.trim_start().trim_start_matches('`').trim().to_string();
            let start = i + 1;
            let mut body = Vec::new();
            i += 1;
            while i < lines.len() && !is_fence(lines[i]) {
                body.push((i + 1, lines[i].to_string()));
                i += 1;
            }
            out.push(Block {
                file: file.to_string(),
                line: start,
                lang,
                body,
            });
        } else if line.starts_with("    ")
            && i > 0
            && lines[i - 1].trim().is_empty()
            && ["switchyard ", "curl ", "$ "]
                .iter()
                .any(|p| line.trim_start().starts_with(p))
        {
            problems.push(format!(
                "{file}:{}: a command in an indented block: fence it as ```sh",
                i + 1
            ));
        }
        i += 1;
    }
    out
}

/// The commands of an `sh` block.
fn sh_commands(block: &Block) -> Vec<Cmd> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let mut depth = 0i32;
    for (n, line) in &block.body {
        let t = line.trim();
        if current.is_none() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        let (start, mut text) = current.take().unwrap_or((*n, String::new()));
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(line);
        let first = t.split_whitespace().next().unwrap_or("");
        if matches!(first, "for" | "while" | "until" | "if") {
            depth += 1;
        }
        if matches!(first, "done" | "fi" | "done;" | "fi;") {
            depth -= 1;
        }
        if t.ends_with('\\') || depth > 0 {
            current = Some((start, text));
        } else {
            out.push(Cmd {
                file: block.file.clone(),
                line: start,
                text,
                output: None,
            });
        }
    }
    if let Some((start, text)) = current {
        out.push(Cmd {
            file: block.file.clone(),
            line: start,
            text,
            output: None,
        });
    }
    out
}

/// The commands of a `console` block, each with the output shown after it.
fn console_commands(block: &Block, problems: &mut Vec<String>) -> Vec<Cmd> {
    let mut out: Vec<Cmd> = Vec::new();
    for (n, line) in &block.body {
        if let Some(command) = line.strip_prefix("$ ") {
            out.push(Cmd {
                file: block.file.clone(),
                line: *n,
                text: command.to_string(),
                output: Some(String::new()),
            });
        } else if let Some(last) = out.last_mut() {
            let shown = last.output.as_mut().unwrap();
            shown.push_str(line);
            shown.push('\n');
        } else {
            problems.push(format!(
                "{}:{n}: a console block starts with `$ COMMAND`",
                block.file
            ));
        }
    }
    out
}

/// Every command of the docs, in order; the problems with how they are written.
fn doc_commands() -> (Vec<Cmd>, Vec<String>) {
    let mut problems = Vec::new();
    let mut commands = Vec::new();
    for file in doc_files() {
        for block in blocks(&file, &mut problems) {
            let at = format!("{}:{}", block.file, block.line);
            match block.lang.as_str() {
                "" => problems.push(format!(
                    "{at}: a fenced block without a language: ```sh for commands, \
                     ```console for a command and its output, ```text for output"
                )),
                "bash" | "shell" | "shell-session" | "zsh" => problems.push(format!(
                    "{at}: ```{}: write ```sh (or ```console with `$ ` prompts)",
                    block.lang
                )),
                "sh" => commands.extend(sh_commands(&block)),
                "console" => commands.extend(console_commands(&block, &mut problems)),
                _ => {}
            }
        }
    }
    (commands, problems)
}

/// The command's first line, trimmed: what [`SKIPPED`], [`EXIT_CODES`] and [`SAYS`]
/// match the start of.
fn head(cmd: &Cmd) -> &str {
    cmd.text.trim_start()
}

fn skipped(cmd: &Cmd) -> Option<&'static str> {
    SKIPPED
        .iter()
        .find(|(prefix, _)| head(cmd).starts_with(prefix))
        .map(|(_, why)| *why)
}

fn expected_exit(cmd: &Cmd) -> i32 {
    EXIT_CODES
        .iter()
        .find(|(prefix, ..)| head(cmd).starts_with(prefix))
        .map_or(0, |(_, code, _)| *code)
}

#[test]
fn every_command_block_is_tagged_and_every_skip_is_still_needed() {
    let (commands, mut problems) = doc_commands();
    assert!(
        commands.len() >= 10,
        "only {} commands found in the docs: {commands:#?}",
        commands.len()
    );
    for (prefix, why) in SKIPPED {
        if !commands.iter().any(|c| head(c).starts_with(prefix)) {
            problems.push(format!(
                "SKIPPED `{prefix}` ({why}): no command in the docs begins so any more"
            ));
        }
    }
    for (prefix, ..) in EXIT_CODES {
        if !commands.iter().any(|c| head(c).starts_with(prefix)) {
            problems.push(format!(
                "EXIT_CODES `{prefix}`: no command in the docs begins so any more"
            ));
        }
    }
    for (prefix, _) in SAYS {
        if !commands
            .iter()
            .any(|c| skipped(c).is_none() && head(c).starts_with(prefix))
        {
            problems.push(format!(
                "SAYS `{prefix}`: no command run begins so any more"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// === the scenes the commands run in ===

/// Where the commands run: a directory, the PATH and environment they get, and the
/// switchyard (with its model servers) they talk to.
struct Scene {
    dir: tempfile::TempDir,
    path: String,
    /// `Some((data, admin))` when the default ports were busy.
    moved: Option<(String, String)>,
    switchyard: Switchyard,
    admin: String,
    _models: Vec<ModelServer>,
}

/// The default ports when both are free (and `default` allows them), else two free
/// ones: (data, admin, moved).
fn ports(default: bool) -> (String, String, bool) {
    let free = |addr: &str| std::net::TcpListener::bind(addr).is_ok();
    if default && free("127.0.0.1:8080") && free("127.0.0.1:9901") {
        ("127.0.0.1:8080".into(), "127.0.0.1:9901".into(), false)
    } else {
        let data = format!("127.0.0.1:{}", free_port());
        let admin = format!("127.0.0.1:{}", free_port());
        eprintln!(
            "docs_examples: 127.0.0.1:8080 or 127.0.0.1:9901 is in use: switchyard listens \
             on {data} and {admin}, and the commands are rewritten to them"
        );
        (data, admin, true)
    }
}

/// The yaml block of README.md's Configuration section.
fn readme_config() -> String {
    let mut ignore = Vec::new();
    let block = blocks("README.md", &mut ignore)
        .into_iter()
        .find(|b| b.lang == "yaml")
        .expect("README.md has a yaml config example");
    block.body.iter().map(|(_, l)| format!("{l}\n")).collect()
}

impl Scene {
    /// Starts switchyard on `config` in a directory of its own, with a demo model
    /// server in place of each backend URL of `backends`.
    async fn start(config: &str, backends: &[&str]) -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let exe = Path::new(env!("CARGO_BIN_EXE_switchyard"));
        std::os::unix::fs::symlink(exe, bin.join("switchyard")).unwrap();
        // README.md's "Running it" names the release build; the build under test stands in.
        std::fs::create_dir_all(dir.path().join("target/release")).unwrap();
        std::os::unix::fs::symlink(exe, dir.path().join("target/release/switchyard")).unwrap();
        copy_dir(&root().join("config"), &dir.path().join("config"));
        for name in FIXTURES {
            std::fs::copy(
                root().join("tests/docs_fixtures").join(name),
                dir.path().join(name),
            )
            .unwrap();
        }

        let mut config = config.to_string();
        let mut models = Vec::new();
        for (i, url) in backends.iter().enumerate() {
            let name = format!("model-{i}");
            let server = ModelServer::start(&name, Model::default()).await.unwrap();
            config = config.replace(url, &server.url());
            models.push(server);
        }
        // The default ports, unless they are busy or are taken between the look and
        // switchyard's bind (it then exits at once): free ones then.
        let mut default_ports = true;
        let (switchyard, admin, moved) = 'start: loop {
            let (data, admin, moved) = ports(default_ports);
            let mut text = config.clone();
            if moved {
                text = text
                    .replace("127.0.0.1:8080", &data)
                    .replace("127.0.0.1:9901", &admin);
            }
            let file = dir.path().join("scene.yaml");
            std::fs::write(&file, &text).unwrap();
            let mut switchyard =
                Switchyard::run_in(&file, dir.path(), &[("SWITCHYARD_ADMIN_TOKEN", TOKEN)]);
            let client = support::client();
            let ready = format!("http://{admin}/readyz");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(status) = switchyard.exited() {
                    if !moved {
                        default_ports = false;
                        continue 'start;
                    }
                    panic!("switchyard exited ({status}) on:\n{text}");
                }
                let req = http::Request::get(&ready)
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                let answer = tokio::time::timeout(Duration::from_secs(1), client.request(req));
                if let Ok(Ok(r)) = answer.await {
                    if r.status().is_success() {
                        break 'start (switchyard, admin, moved.then_some(data));
                    }
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "switchyard not ready on {admin} within 10 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };

        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Scene {
            dir,
            path,
            moved: moved.map(|data| (data, admin.clone())),
            switchyard,
            admin,
            _models: models,
        }
    }

    fn url(&self, path: &str) -> String {
        let data = self
            .moved
            .as_ref()
            .map_or("127.0.0.1:8080", |(data, _)| data.as_str());
        format!("http://{data}{path}")
    }

    /// Runs `cmd` as written (its ports rewritten if the scene moved them), for at most
    /// 15 s: exit code and everything it printed, stdout then stderr.
    async fn run(&self, cmd: &Cmd) -> (Option<i32>, String) {
        let mut text = cmd.text.clone();
        let mut command = tokio::process::Command::new("sh");
        command
            .current_dir(self.dir.path())
            .env("PATH", &self.path)
            .env("SWITCHYARD_ADMIN_TOKEN", TOKEN)
            .env_remove("SWITCHYARD_ROUTE")
            .env_remove("SWITCHYARD_ADMIN")
            .env_remove("RUST_LOG")
            .kill_on_drop(true);
        if let Some((data, admin)) = &self.moved {
            text = text
                .replace("127.0.0.1:8080", data)
                .replace("127.0.0.1:9901", admin);
            command.env("SWITCHYARD_ADMIN", format!("http://{admin}"));
        }
        let out = tokio::time::timeout(
            Duration::from_secs(15),
            command.arg("-c").arg(&text).output(),
        )
        .await
        .unwrap_or_else(|_| panic!("{}: `{}` still running after 15 s", cmd.at(), cmd.text))
        .unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), printed)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest: PathBuf = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// A V2 request for the model `iris`: four features that vary with `i`.
fn iris_request(i: usize) -> String {
    let x = i as f64;
    format!(
        r#"{{"inputs":[{{"name":"input-0","shape":[1,4],"datatype":"FP32","data":[{:.1},{:.1},{:.1},{:.1}]}}]}}"#,
        4.5 + (x * 0.37) % 3.0,
        2.0 + (x * 0.21) % 2.4,
        1.0 + (x * 0.53) % 5.9,
        0.1 + (x * 0.13) % 2.4
    )
}

/// What docs/ assumes has happened: 60 requests answered (one under the id the
/// feedback example labels), the reference built, the first capture file under the
/// name monitoring.md gives it, and a CSV table of the inputs as `train.csv`.
async fn prepare_docs(scene: &Scene) {
    let client = support::client();
    let url = scene.url("/v2/models/iris/infer");
    for i in 0..60 {
        let id = if i == 0 {
            LABELLED_ID.to_string()
        } else {
            format!("docs-example-{i}")
        };
        let answer = support::send(
            &client,
            Method::POST,
            &url,
            &[("content-type", "application/json"), ("x-request-id", &id)],
            iris_request(i),
        )
        .await;
        assert!(answer.status.is_success(), "request {i}: {answer:?}");
    }

    let reference = format!(
        "http://{}/api/v1/routes/iris/monitor/reference",
        scene.admin
    );
    support::eventually("the reference built", Duration::from_millis(100), || {
        let client = client.clone();
        let reference = reference.clone();
        async move {
            let a = support::send(&client, Method::GET, &reference, &[], String::new()).await;
            if a.status.is_success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&a.body).into_owned())
            }
        }
    })
    .await;

    let capture = scene.dir.path().join("capture");
    let written = support::eventually("60 records captured", Duration::from_millis(100), || {
        let capture = capture.clone();
        async move {
            let files: Vec<PathBuf> = std::fs::read_dir(&capture)
                .map_err(|e| e.to_string())?
                .map(|e| e.unwrap().path())
                .collect();
            match files.as_slice() {
                [one] => {
                    let lines = std::fs::read_to_string(one).unwrap().lines().count();
                    if lines >= 60 {
                        Ok(one.clone())
                    } else {
                        Err(format!("{lines} records"))
                    }
                }
                _ => Err(format!("capture files: {files:?}")),
            }
        }
    })
    .await;
    std::fs::rename(
        &written,
        capture.join("capture-20250601T120000Z-000001.jsonl"),
    )
    .unwrap();

    let mut csv = String::from("sepal_length,sepal_width,petal_length,petal_width\n");
    for i in 0..30 {
        let v: Value = serde_json::from_str(&iris_request(i)).unwrap();
        let row: Vec<String> = v["inputs"][0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.to_string())
            .collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    std::fs::write(scene.dir.path().join("train.csv"), csv).unwrap();
}

/// The first line of `printed` that reads as an error or a warning.
fn error_in(printed: &str) -> Option<&str> {
    printed.lines().find(|line| {
        let l = line.trim_start().to_lowercase();
        l.contains("\"error\"")
            || l.starts_with("error")
            || l.starts_with("switchyard:")
            || l.starts_with("switchyard baseline:")
            || l.starts_with("curl:")
            || l.starts_with("sh:")
            || l.contains("warning")
            || l.contains("not found")
    })
}

/// Runs every command of `commands` not skipped in `scene`; the failures.
async fn run_all(scene: &Scene, commands: &[&Cmd]) -> Vec<String> {
    let mut failures = Vec::new();
    for cmd in commands {
        let (code, printed) = scene.run(cmd).await;
        let expected = expected_exit(cmd);
        eprintln!(
            "ran {} (exit {code:?}): {}\n{}",
            cmd.at(),
            cmd.text,
            indent(&printed)
        );
        let mut wrong = Vec::new();
        if code == Some(127) {
            wrong.push(
                "a program it needs is not installed here (.ci/run must install it)".to_string(),
            );
        } else if code != Some(expected) {
            wrong.push(format!("exit {code:?}, documented {expected}"));
        }
        match &cmd.output {
            Some(shown) => {
                if printed != *shown {
                    wrong.push(format!(
                        "printed\n{}\nthe doc shows\n{}",
                        indent(&printed),
                        indent(shown)
                    ));
                }
            }
            None => {
                if let Some(line) = error_in(&printed) {
                    wrong.push(format!("printed an error: {line}"));
                }
            }
        }
        for (prefix, says) in SAYS {
            if head(cmd).starts_with(prefix) && !printed.contains(says) {
                wrong.push(format!("does not say `{says}`"));
            }
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: `{}`: {}\n{}",
                cmd.at(),
                cmd.text,
                wrong.join("; "),
                indent(&printed)
            ));
        }
    }
    failures
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shell_example_in_the_docs_runs_as_written() {
    let (commands, problems) = doc_commands();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let mut run = Vec::new();
    for cmd in &commands {
        match skipped(cmd) {
            Some(why) => eprintln!("skipped {}: {} ({why})", cmd.at(), head(cmd)),
            None => run.push(cmd),
        }
    }
    let (readme, docs): (Vec<&Cmd>, Vec<&Cmd>) =
        run.into_iter().partition(|c| c.file == "README.md");
    assert!(!readme.is_empty() && !docs.is_empty());

    let mut failures = Vec::new();
    {
        let scene = Scene::start(&readme_config(), &BACKENDS).await;
        failures.extend(run_all(&scene, &readme).await);
    }
    {
        let mut scene = Scene::start(DOCS_CONFIG, &BACKENDS).await;
        prepare_docs(&scene).await;
        failures.extend(run_all(&scene, &docs).await);
        assert!(scene.switchyard.exited().is_none(), "switchyard exited");
    }
    assert!(
        failures.is_empty(),
        "{} of the docs' commands do not run as written:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}
