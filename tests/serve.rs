//! Issue 11, `qcyn serve`: the server started on a free loopback port answers `predict --json`'s
//! entries, refuses broken and oversized images with JSON errors, times out slow uploads, turns a
//! flood away with 503 + Retry-After, and stops with exit code 0 on SIGTERM.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::util::*;

/// 8×8 photos (the tiny fixture model's input) and a bundle `b` fitted on them.
fn fitted() -> Dir {
    tiny_fitted("2")
}

/// A running `qcyn serve`, killed when dropped.
struct Server {
    child: Child,
    port: u16,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `qcyn serve --bundle b --addr 127.0.0.1:0 extra…` in `dir` and reads the port from
    /// its `listening on` line; `Err(stderr)` when it exits instead.
    fn start(dir: &Dir, extra: &[&str]) -> Result<Server, String> {
        let m = fixture_models();
        let mut args = vec!["--models-dir", m.as_str()];
        args.extend_from_slice(extra);
        Server::spawn(dir, &args)
    }

    /// Starts `qcyn [global…] serve --bundle b --addr 127.0.0.1:0 [extra…]` in `dir`, where
    /// `args` is the global options (e.g. `--models-dir`) then serve's.
    fn spawn(dir: &Dir, args: &[&str]) -> Result<Server, String> {
        let (global, extra) = match args.iter().position(|a| *a == "--models-dir") {
            Some(i) => args.split_at(i + 2),
            None => args.split_at(0),
        };
        let mut child = dir
            .qcyn()
            .args(global)
            .args(["serve", "--bundle", "b"])
            .args(["--addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("qcyn runs");
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = String::new();
        // Bounded: the server is ready or gone within a minute.
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
            seen.push_str(&line);
            seen.push('\n');
            if let Some(addr) = line.strip_prefix("listening on http://127.0.0.1:") {
                assert_eq!(line.trim_end(), line, "exactly the line: {line:?}");
                let port = addr.parse().expect("a port");
                return Ok(Server {
                    child,
                    port,
                    stderr: rx,
                });
            }
        }
        let _ = child.kill();
        let status = child.wait().unwrap();
        Err(format!("{status}\n{seen}"))
    }

    /// Sends SIGTERM and returns the exit code and what it printed on stderr.
    fn terminate(mut self) -> (Option<i32>, String) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let code = self.child.wait().unwrap().code();
        let mut rest = String::new();
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(10)) {
            rest.push_str(&line);
            rest.push('\n');
        }
        (code, rest)
    }
}

/// An HTTP answer: status, headers (lower-case names), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    s
}

/// Reads one whole answer (the server closes the connection after it).
fn read_answer(mut s: TcpStream) -> Answer {
    let mut raw = Vec::new();
    // A reset after the answer (the server closed with part of a refused body unread) ends it.
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn request(port: u16, method: &str, path: &str, body: &[u8]) -> Answer {
    let mut s = connect(port);
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before all of a refused body is written.
    let _ = s.write_all(body);
    read_answer(s)
}

fn post(port: u16, path: &str, body: &[u8]) -> Answer {
    request(port, "POST", path, body)
}

#[test]
fn serve_answers_as_predict_does_and_refuses_bad_images_with_json_errors() {
    require_runtime();
    let dir = fitted();
    let images = ["data/red/p1.png", "data/blue/p3.png", "data/red/p9.png"];
    let mut args = vec!["predict", "--bundle", "b"];
    args.extend_from_slice(&images);
    let (want, code, err) = q_fixture(&dir, &args);
    assert_eq!(code, 0, "{err}");
    let server = Server::start(&dir, &["--max-body-mib", "1"]).expect("the server starts");
    let port = server.port;

    for (i, image) in images.iter().enumerate() {
        let bytes = std::fs::read(dir.path(image)).unwrap();
        let a = post(port, &format!("/v1/predict?name={image}"), &bytes);
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        assert_eq!(a.header("content-type"), Some("application/json"));
        let got = a.json();
        let want = &want[i];
        assert_eq!(got["path"], want["path"], "{got} vs {want}");
        assert_eq!(got["label"], want["label"], "{got} vs {want}");
        let (g, w) = (
            got["probabilities"].as_object().unwrap(),
            want["probabilities"].as_object().unwrap(),
        );
        assert_eq!(
            g.keys().collect::<Vec<_>>(),
            w.keys().collect::<Vec<_>>(),
            "same classes, same order"
        );
        for (class, p) in w {
            let d = (p.as_f64().unwrap() - g[class].as_f64().unwrap()).abs();
            assert!(d <= 1e-6, "{class}: {got} vs {want}");
        }
        assert_eq!(
            got.as_object().unwrap().keys().collect::<Vec<_>>(),
            want.as_object().unwrap().keys().collect::<Vec<_>>()
        );
    }
    // Without a name the entry is called `upload`.
    let bytes = std::fs::read(dir.path(images[0])).unwrap();
    assert_eq!(post(port, "/v1/predict", &bytes).json()["path"], "upload");

    let bad = |body: &[u8], status: u16, says: &str| {
        let a = post(port, "/v1/predict", body);
        assert_eq!(a.status, status, "{}", String::from_utf8_lossy(&a.body));
        let e = a.json();
        let msg = e["error"].as_str().unwrap_or_else(|| panic!("{e}"));
        assert!(msg.contains(says), "{msg}");
    };
    bad(
        b"this is a text file, not a photo\n",
        400,
        "not a recognised image",
    );
    bad(b"", 400, "empty");
    bad(&png_declaring(50_000, 50_000), 400, "50000×50000");
    let mut cut = std::fs::read(dir.path(images[1])).unwrap();
    cut.truncate(cut.len() / 2);
    bad(&cut, 400, "");
    bad(&vec![7u8; 1024 * 1024 + 10], 413, "over the limit");
    // The same without a declared length (chunked): refused once the limit is passed.
    let mut s = connect(port);
    s.write_all(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n")
        .unwrap();
    let chunk = vec![7u8; 64 * 1024];
    for _ in 0..17 {
        let mut c = format!("{:x}\r\n", chunk.len()).into_bytes();
        c.extend_from_slice(&chunk);
        c.extend_from_slice(b"\r\n");
        if s.write_all(&c).is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let a = read_answer(s);
    assert_eq!(a.status, 413, "{}", String::from_utf8_lossy(&a.body));
    let wrong = request(port, "GET", "/v1/predict", b"");
    assert_eq!(wrong.status, 405);
    assert!(wrong.json()["error"]
        .as_str()
        .unwrap()
        .contains("POST /v1/predict"));

    let health = request(port, "GET", "/healthz", b"");
    assert_eq!(health.status, 200);
    let model = request(port, "GET", "/v1/model", b"").json();
    assert_eq!(
        model["classes"],
        serde_json::json!(["blue", "red"]),
        "{model}"
    );
    assert_eq!(model["model"]["name"], "tiny", "{model}");
    assert_eq!(model["kind"], "whole", "{model}");
    let page = request(port, "GET", "/", b"");
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body);
    assert!(
        html.contains("/v1/predict") && html.contains("<script>"),
        "{html}"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no network"
    );
    let missing = request(port, "GET", "/nowhere", b"");
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].is_string());

    let (code, err) = server.terminate();
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn serve_times_out_a_slow_upload_and_turns_a_flood_away_with_retry_after() {
    require_runtime();
    let dir = fitted();
    let server = Server::start(&dir, &["--queue", "1", "--read-timeout", "2s"]).expect("starts");
    let port = server.port;
    let image = std::fs::read(dir.path("data/red/p1.png")).unwrap();
    // A client that never finishes its upload holds the one place in the queue…
    let open_slow = || {
        let mut slow = connect(port);
        slow.write_all(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n0123456789")
            .unwrap();
        slow
    };
    let mut slow = open_slow();
    // …so another request is turned away. Bounded retries: the slow one may not be admitted yet,
    // or may itself have been turned away by a request admitted just before it (then it is
    // opened again).
    let mut turned_away = None;
    for _ in 0..100 {
        let a = post(port, "/v1/predict", &image);
        if a.status == 503 {
            turned_away = Some(a);
            break;
        }
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        slow.set_nonblocking(true).unwrap();
        let answered = !matches!(slow.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        slow.set_nonblocking(false).unwrap();
        if answered {
            slow = open_slow();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let a = turned_away.expect("a request beyond --queue is answered 503");
    assert_eq!(a.header("retry-after"), Some("1"));
    assert!(a.json()["error"].as_str().unwrap().contains("busy"));
    // The slow client gets 408 when its time is up, and its place is free again.
    let timed_out = read_answer(slow);
    assert_eq!(
        timed_out.status,
        408,
        "{}",
        String::from_utf8_lossy(&timed_out.body)
    );
    assert!(timed_out.json()["error"]
        .as_str()
        .unwrap()
        .contains("--read-timeout"));
    assert_eq!(post(port, "/v1/predict", &image).status, 200);
    let (code, err) = server.terminate();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn serve_refuses_to_start_when_the_model_file_changed_since_fit() {
    require_runtime();
    let dir = fitted();
    let path = dir.path("b/bundle.json");
    let mut bundle: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    bundle["model"]["sha256"] = Value::String("0".repeat(64));
    std::fs::write(&path, serde_json::to_vec(&bundle).unwrap()).unwrap();
    let err = match Server::start(&dir, &[]) {
        Ok(_) => panic!("the server started on a changed model"),
        Err(e) => e,
    };
    assert!(err.contains("exit status: 1"), "{err}");
    assert!(err.contains("sha256") && err.contains("hint:"), "{err}");
    assert!(!err.contains("listening on"), "{err}");
}

/// A face photo from `.qcyn/testdata/faces` (scripts/fetch_test_images).
fn face_photo(name: &str) -> std::path::PathBuf {
    let p = project().join(".qcyn/testdata/faces").join(name);
    assert!(
        p.is_file(),
        "{} is missing: run scripts/setup (or scripts/fetch_test_images)",
        p.display()
    );
    p
}

#[test]
fn serve_answers_face_bundles_with_every_face_as_predict_does() {
    require_runtime();
    require_model_file("yunet.onnx");
    require_model_file("sface.onnx");
    let dir = Dir::new();
    for name in ["obama.jpg", "obama2.jpg", "obama3.jpg"] {
        std::fs::create_dir_all(dir.path("faces/obama")).unwrap();
        std::fs::copy(face_photo(name), dir.path("faces/obama").join(name)).unwrap();
    }
    let biden =
        qcyn::preprocess::decode_rgb(&std::fs::read(face_photo("biden.jpg")).unwrap()).unwrap();
    let (w, h) = biden.dimensions();
    let biden =
        image::imageops::resize(&biden, w / 2, h / 2, image::imageops::FilterType::Triangle);
    dir.write("faces/biden/biden.jpg", &jpeg(&biden));
    dir.write(
        "faces/biden/flip.jpg",
        &jpeg(&image::imageops::flip_horizontal(&biden)),
    );
    dir.write(
        "faces/biden/crop.jpg",
        &jpeg(&image::imageops::crop_imm(&biden, w / 20, 0, w * 4 / 10, h / 3).to_image()),
    );
    let (_, code, err) = dir.json(&[
        "fit",
        "faces",
        "--model",
        "face",
        "--val-per-class",
        "1",
        "--out",
        "b",
    ]);
    assert_eq!(code, 0, "{err}");
    std::fs::copy(face_photo("obama_partial_face.jpg"), dir.path("obama.jpg")).unwrap();
    std::fs::copy(face_photo("astronaut.png"), dir.path("astronaut.png")).unwrap();
    let (want, code, err) = dir.json(&["predict", "--bundle", "b", "obama.jpg", "astronaut.png"]);
    assert_eq!(code, 0, "{err}");

    let server = Server::spawn(&dir, &[]).expect("the server starts");
    let port = server.port;
    for (i, name) in ["obama.jpg", "astronaut.png"].iter().enumerate() {
        let bytes = std::fs::read(dir.path(name)).unwrap();
        let a = post(port, &format!("/v1/predict?name={name}"), &bytes);
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        let got = a.json();
        let want = &want[i];
        assert_eq!(got["label"], want["label"], "{got} vs {want}");
        let (g, w) = (
            got["faces"].as_array().unwrap(),
            want["faces"].as_array().unwrap(),
        );
        assert!(!w.is_empty(), "{want}");
        assert_eq!(g.len(), w.len(), "{got} vs {want}");
        for (g, w) in g.iter().zip(w) {
            assert_eq!(g["label"], w["label"], "{got} vs {want}");
            for k in 0..4 {
                let d = (g["box"][k].as_f64().unwrap() - w["box"][k].as_f64().unwrap()).abs();
                assert!(d < 1e-3, "{got} vs {want}");
            }
        }
    }
    let model = request(port, "GET", "/v1/model", b"").json();
    assert_eq!(model["kind"], "face", "{model}");
    let (code, err) = server.terminate();
    assert_eq!(code, Some(0), "{err}");
}

/// A bundle fitted with `--unfreeze 1` is served as `predict` runs it: the frozen prefix, then
/// the bundle's trained tail.
#[test]
fn serve_runs_an_unfrozen_bundle_as_predict_does() {
    require_runtime();
    let dir = Dir::new();
    make_dataset(&dir, "data", &["a", "b"], 6);
    let (_, code, err) = dir.json(&[
        "fit",
        "data",
        "--model",
        "mobilenetv2",
        "--unfreeze",
        "1",
        "--epochs",
        "1",
        "--val-per-class",
        "2",
        "--no-group",
        "--out",
        "b",
    ]);
    assert_eq!(code, 0, "{err}");
    let image = "data/b/img003.png";
    let (want, code, err) = dir.json(&["predict", "--bundle", "b", image]);
    assert_eq!(code, 0, "{err}");
    let server = Server::spawn(&dir, &[]).expect("the server starts");
    let a = post(
        server.port,
        &format!("/v1/predict?name={image}"),
        &std::fs::read(dir.path(image)).unwrap(),
    );
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let got = a.json();
    assert_eq!(got["label"], want[0]["label"]);
    for (class, p) in want[0]["probabilities"].as_object().unwrap() {
        assert!(
            (p.as_f64().unwrap() - got["probabilities"][class].as_f64().unwrap()).abs() <= 1e-6,
            "{got} vs {want}"
        );
    }
}
