//! The client subcommands as a user runs them: the `bindery` binary against a running server.

use std::process::{Command, Output, Stdio};

use crate::common;

fn bindery() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bindery"))
}

async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().expect("run bindery")).await.expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_takes_a_bare_host_and_port_and_shows_descriptions() {
    let server = common::start_fixture().await;
    let mut command = bindery();
    command.args(["models", "--server", &server.addr.to_string()]);
    let output = run(command).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let reply: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    let fixture = reply["models"]
        .as_array()
        .and_then(|models| models.iter().find(|m| m["name"] == "imagebind-fixture"))
        .expect("the fixture model is listed");
    assert!(fixture["description"].as_str().is_some_and(|d| d.starts_with("Tiny ImageBind")), "{fixture}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_embed_quietly() {
    let server = common::start_fixture().await;
    let addr = server.addr.to_string();
    let output = tokio::task::spawn_blocking(move || {
        let mut child = bindery()
            .args(["embed", "--server", &addr, "--text", "a red cube", "--text", "a blue sphere"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bindery embed");
        // The reader goes away before the reply is printed, as `| head -0` would.
        drop(child.stdout.take());
        child.wait_with_output().expect("wait")
    })
    .await
    .expect("join");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "exit {:?}: {stderr}", output.status);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
}

#[tokio::test]
async fn logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let data = common::TempDir::new("cli-ansi");
    let mut command = bindery();
    command.args([
        "serve",
        "--ort-lib",
        "/nonexistent/libonnxruntime.so",
        "--no-warm-up",
        "--listen",
        "127.0.0.1:0",
    ]);
    command.arg("--models").arg(common::repo().join("models")).arg("--data-dir").arg(data.path());
    let output = run(command).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("bindery starting"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "ANSI escape codes in redirected logs: {stderr:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_takes_every_modality_folders_and_stdin_in_command_line_order() {
    let server = common::start_fixture().await;
    let addr = server.addr.to_string();
    let cases = common::FIXTURES.path("point_cloud/cases");
    let image = common::FIXTURES.path("images/jpeg_baseline.jpg");
    let output = tokio::task::spawn_blocking(move || {
        let mut child = bindery()
            .args(["embed", "--server", &addr, "--text", "a chair", "--point-cloud"])
            .arg(cases.join("ascii_color.ply"))
            .args(["--image", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bindery embed");
        let bytes = std::fs::read(image).expect("fixture image");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &bytes).expect("write stdin");
        child.wait_with_output().expect("wait")
    })
    .await
    .expect("join");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let embeddings = json_lines(&output.stdout);
    let got: Vec<(String, String)> = embeddings
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap_or_default().to_string(),
                e["modality"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0], ("a chair".to_string(), "MODALITY_TEXT".to_string()));
    assert!(got[1].0.ends_with("ascii_color.ply") && got[1].1 == "MODALITY_POINT_CLOUD", "{got:?}");
    assert_eq!(got[2], ("-".to_string(), "MODALITY_IMAGE".to_string()));

    // A folder: every file with a point-cloud extension under it, in name order.
    let mut command = bindery();
    command
        .args(["embed", "--server", &server.addr.to_string(), "--point-cloud"])
        .arg(common::FIXTURES.path("point_cloud/cases"));
    let output = run(command).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let embeddings = json_lines(&output.stdout);
    let ids: Vec<&str> = embeddings.iter().filter_map(|e| e["id"].as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert!(ids.len() >= 3 && ids == sorted, "{ids:?}");
    assert!(
        ids.iter().all(|id| [".ply", ".pcd", ".xyz", ".pts", ".csv", ".npy", ".obj"]
            .iter()
            .any(|e| id.ends_with(e))),
        "{ids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_takes_thermal_files_and_folders() {
    let server = common::start_fixture().await;
    let mut command = bindery();
    command
        .args(["embed", "--server", &server.addr.to_string(), "--thermal"])
        .arg(common::FIXTURES.path("thermal/gray8_640x512.png"))
        .arg(common::FIXTURES.path("thermal"));
    let output = run(command).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let embeddings = json_lines(&output.stdout);
    // The file, then every image file in the folder (its cases.json is not one).
    let files = std::fs::read_dir(common::FIXTURES.path("thermal"))
        .expect("thermal fixtures")
        .filter(|e| !e.as_ref().expect("entry").path().to_string_lossy().ends_with(".json"))
        .count();
    assert_eq!(embeddings.len(), 1 + files);
    assert!(embeddings.iter().all(|e| e["modality"] == "MODALITY_THERMAL"), "{embeddings:#?}");
    assert!(embeddings[0]["id"].as_str().unwrap_or_default().ends_with("gray8_640x512.png"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_takes_imu_csv_and_npy_files() {
    let server = common::start_fixture().await;
    let mut command = bindery();
    command
        .args(["embed", "--server", &server.addr.to_string(), "--imu"])
        .arg(common::FIXTURES.path("imu/weaviate_2000.csv"))
        .arg(common::FIXTURES.path("imu/sample_major.npy"));
    let output = run(command).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let embeddings = json_lines(&output.stdout);
    assert_eq!(embeddings.len(), 2);
    assert!(embeddings.iter().all(|e| e["modality"] == "MODALITY_IMU"), "{embeddings:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_takes_depth_maps_and_arrays() {
    let server = common::start_fixture().await;
    let mut command = bindery();
    command
        .args(["embed", "--server", &server.addr.to_string(), "--depth"])
        .arg(common::FIXTURES.path("depth/kinect_640x480.png"))
        .arg(common::FIXTURES.path("depth/metres_320x240.npy"));
    let output = run(command).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let embeddings = json_lines(&output.stdout);
    assert_eq!(embeddings.len(), 2);
    assert!(embeddings.iter().all(|e| e["modality"] == "MODALITY_DEPTH"), "{embeddings:#?}");
}

/// The objects of `bindery embed`'s JSON Lines output (its default for several inputs), one per
/// line, each line a complete compact object.
fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    let text = std::str::from_utf8(stdout).expect("UTF-8 on stdout");
    text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_writes_compact_json_jsonl_and_npy_in_input_order_across_batches() {
    let server = common::start_fixture().await;
    let addr = server.addr.to_string();
    let texts = ["a red cube", "a blue sphere", "a green cone", "a dog", "a cat"];
    let embed = |extra: &[&str]| {
        let mut command = bindery();
        command.args(["embed", "--server", &addr, "--text"]).args(texts).args(extra);
        command
    };

    // One input: one compact JSON object on one line (not a pretty-printed page).
    let mut one = bindery();
    one.args(["embed", "--server", &addr, "--text", "a red cube"]);
    let output = run(one).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    assert_eq!(text.lines().count(), 1, "{text}");
    let object: serde_json::Value = serde_json::from_str(&text).expect("one JSON object");
    let single = object["embeddings"][0]["vector"].clone();

    // Several inputs, sent two per request: JSON Lines by default, in command-line order.
    let output = run(embed(&["--batch-size", "2"])).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines = json_lines(&output.stdout);
    let ids: Vec<&str> = lines.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids, texts);
    assert_eq!(lines[0]["vector"], single);

    // --format json: the same embeddings in one object.
    let output = run(embed(&["--format", "json"])).await;
    let object: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON object");
    assert_eq!(object["embeddings"].as_array().map(Vec::len), Some(texts.len()));

    // --format npy: a float32 [5, D] array holding the same vectors.
    let output = run(embed(&["--format", "npy"])).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let npy = output.stdout;
    assert!(npy.starts_with(b"\x93NUMPY\x01\x00"));
    let header_len = u16::from_le_bytes([npy[8], npy[9]]) as usize;
    let header = std::str::from_utf8(&npy[10..10 + header_len]).expect("text header");
    let dim = lines[0]["dimension"].as_u64().expect("dimension") as usize;
    assert!(header.contains(&format!("'shape': (5, {dim})")) && header.contains("'<f4'"), "{header}");
    assert_eq!((10 + header_len) % 64, 0, "numpy aligns the data to 64 bytes");
    let values: Vec<f32> = npy[10 + header_len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(values.len(), 5 * dim);
    for (row, line) in values.chunks(dim).zip(&lines) {
        let want: Vec<f32> = serde_json::from_value(line["vector"].clone()).expect("floats");
        assert_eq!(row, &want[..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_expands_glob_patterns_and_names_one_that_matches_nothing() {
    let server = common::start_fixture().await;
    let images = common::FIXTURES.path("images");
    let pattern = images.join("png_2*.png").display().to_string();
    let mut command = bindery();
    command.args(["embed", "--server", &server.addr.to_string(), "--image", &pattern]);
    let output = run(command).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let ids: Vec<String> =
        json_lines(&output.stdout).iter().filter_map(|e| e["id"].as_str().map(str::to_string)).collect();
    let mut want: Vec<String> = std::fs::read_dir(&images)
        .expect("images")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("png_2")))
        .map(|p| p.display().to_string())
        .collect();
    want.sort();
    assert!(want.len() >= 2, "{want:?}");
    assert_eq!(ids, want);

    let none = images.join("nothing_like_this_*.png").display().to_string();
    let mut command = bindery();
    command.args(["embed", "--server", &server.addr.to_string(), "--image", &none]);
    let output = run(command).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("matches no file"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_shows_a_progress_bar_only_on_a_terminal() {
    let server = common::start_fixture().await;
    // Ten valid image files (the thermal fixtures), sent two per request.
    let images = common::FIXTURES.path("thermal").display().to_string();
    let bin = env!("CARGO_BIN_EXE_bindery");
    let args = format!("embed --server {} --batch-size 2 --image {images}", server.addr);

    // Redirected stderr: no bar, no control codes.
    let mut plain = Command::new(bin);
    plain.args(args.split(' '));
    let output = run(plain).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.stderr.is_empty(), "{:?}", String::from_utf8_lossy(&output.stderr));

    // Under a pseudo-terminal (util-linux `script`), the bar is drawn on stderr while the
    // requests run, then cleared.
    let mut tty = Command::new("script");
    tty.args(["--quiet", "--return", "--command", &format!("{bin} {args} > /dev/null"), "/dev/null"]);
    let output = run(tty).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(screen.contains(" inputs, "), "no progress bar on the terminal: {screen:?}");
}

#[cfg(feature = "video")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_takes_video_files_and_matches_the_reference() {
    let server = common::start_fixture().await;
    let mut command = bindery();
    command
        .args(["embed", "--server", &server.addr.to_string(), "--format", "jsonl", "--video"])
        .arg(common::FIXTURES.path("video/cases/vp9.webm"));
    let output = run(command).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let embeddings = json_lines(&output.stdout);
    assert_eq!(embeddings.len(), 1);
    assert_eq!(embeddings[0]["modality"], "MODALITY_VIDEO");
    let goldens: serde_json::Value =
        serde_json::from_slice(&std::fs::read(common::FIXTURES.path("video/cases.json")).unwrap()).unwrap();
    let golden = goldens["cases"].as_array().unwrap().iter().find(|c| c["file"] == "cases/vp9.webm").unwrap();
    let as_f32 = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
    };
    let c = common::cosine(&as_f32(&embeddings[0]["vector"]), &as_f32(&golden["embedding"]));
    assert!(c >= 0.999, "cosine {c}");
}

#[cfg(feature = "video")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embed_takes_the_sound_track_and_segment_flags() {
    let server = common::start_fixture().await;
    let mut command = bindery();
    command
        .args(["embed", "--server", &server.addr.to_string(), "--format", "jsonl", "--with-audio"])
        .args(["--segment-seconds", "1", "--video"])
        .arg(common::FIXTURES.path("video/tracks/aac.mp4"));
    let output = run(command).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let got: Vec<(String, f64, f64)> = json_lines(&output.stdout)
        .iter()
        .map(|e| {
            let time = |k: &str| e[k].as_f64().unwrap_or(-1.0);
            (
                e["modality"].as_str().unwrap_or_default().to_string(),
                time("start_seconds"),
                time("end_seconds"),
            )
        })
        .collect();
    let want: Vec<(String, f64, f64)> = [(0.0, 1.0), (1.0, 2.0), (2.0, 2.5)]
        .into_iter()
        .flat_map(|(a, b)| [("MODALITY_VIDEO".to_string(), a, b), ("MODALITY_AUDIO".to_string(), a, b)])
        .collect();
    assert_eq!(got, want);
}
