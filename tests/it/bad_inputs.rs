//! Every class of bad input (truncated, corrupt, oversized, wrong type, adversarial headers, NaN
//! payloads, empty) for every modality, sent to one server: each gets its expected status, and a
//! good request of the same modality right after it is still served, and the table in
//! RELIABILITY.md matches what the server answered. `cargo test --test it bad_inputs:: -- --nocapture`
//! prints that table.

use bindery::api::pb;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::common::*;

/// What a case sends.
enum Send {
    /// A well-formed request.
    Request(pb::EmbedRequest),
    /// Raw `EmbedRequest` message bytes.
    Raw(Vec<u8>),
    /// A well-formed request with one extra metadata entry.
    Header(&'static str, String, pb::EmbedRequest),
}

struct Case {
    class: &'static str,
    modality: &'static str,
    what: &'static str,
    send: Send,
    /// Expected status; `Code::Ok` when the input is accepted (NaN points are dropped).
    expect: Code,
}

fn thermal(id: &str, data: Vec<u8>) -> pb::Input {
    pb::Input {
        id: id.into(),
        payload: Some(pb::input::Payload::ThermalImage(pb::Thermal { data, format_hint: String::new() })),
    }
}

fn one(input: pb::Input) -> pb::EmbedRequest {
    request(vec![input])
}

fn cloud_file(id: &str, data: Vec<u8>, hint: &str) -> pb::Input {
    pb::Input {
        id: id.into(),
        payload: Some(pb::input::Payload::PointCloud(pb::PointCloud {
            data,
            format_hint: hint.into(),
            ..Default::default()
        })),
    }
}

fn cloud_xyz(id: &str, xyz: Vec<f32>) -> pb::Input {
    pb::Input {
        id: id.into(),
        payload: Some(pb::input::Payload::PointCloud(pb::PointCloud { xyz, ..Default::default() })),
    }
}

/// A PCM WAV header (and `data`) declaring whatever the caller wants.
fn wav(channels: u16, rate: u32, bits: u16, declared_data: u32, data: &[u8]) -> Vec<u8> {
    let block = channels.wrapping_mul(bits / 8);
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&36u32.wrapping_add(declared_data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&rate.wrapping_mul(u32::from(block)).to_le_bytes());
    out.extend_from_slice(&block.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&declared_data.to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// A 32-bit float WAV (16 kHz mono, 1 s) whose samples are `sample(i)`.
fn float_wav(sample: impl Fn(usize) -> f32) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut cursor = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
    for i in 0..16_000 {
        writer.write_sample(sample(i)).unwrap();
    }
    writer.finalize().unwrap();
    cursor.into_inner()
}

/// PNG signature and an IHDR chunk declaring 100000 x 100000 RGB pixels, nothing else.
const PNG_BOMB_HEADER: [u8; 33] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00,
    0x01, 0x86, 0xa0, 0x00, 0x01, 0x86, 0xa0, 0x08, 0x02, 0x00, 0x00, 0x00, 0x27, 0x30, 0x9c, 0x9f,
];

/// `EmbedRequest { inputs: [Input { id: "t", <field> }] }` with the input's bytes given raw.
fn raw_request(input: &[u8]) -> Vec<u8> {
    let mut out = vec![0x12, input.len() as u8];
    out.extend_from_slice(input);
    out
}

fn cases() -> Vec<Case> {
    use Code::*;
    let good_wav = FIXTURES.read("audio/cases/wav16k_mono_s16_5s.wav");
    let good_png = FIXTURES.read("images/png_rgb.png");
    let mut cases = vec![
        // Truncated.
        Case {
            class: "truncated",
            modality: "text",
            what: "protobuf cut inside the input (length prefix beyond the end)",
            send: Send::Raw(vec![0x12, 0x20, 0x0a, 0x01, b't', 0x12, 0x05, b'a']),
            expect: InvalidArgument,
        },
        Case {
            class: "truncated",
            modality: "image",
            what: "JPEG cut in the middle of the scan",
            send: Send::Request(one(image("i", FIXTURES.read("images/corrupt_truncated.jpg")))),
            expect: InvalidArgument,
        },
        Case {
            class: "truncated",
            modality: "audio",
            what: "WAV whose data chunk declares twice the bytes present",
            send: Send::Request(one(audio("a", FIXTURES.read("audio/bad/truncated.wav"), ""))),
            expect: InvalidArgument,
        },
        Case {
            class: "truncated",
            modality: "point_cloud",
            what: "binary PLY cut inside the vertex data",
            send: Send::Request(one(cloud_file(
                "p",
                FIXTURES.read("point_cloud/bad/truncated_binary.ply"),
                "ply",
            ))),
            expect: InvalidArgument,
        },
        // Corrupt.
        Case {
            class: "corrupt",
            modality: "text",
            what: "text field holding invalid UTF-8",
            send: Send::Raw(raw_request(&[0x0a, 0x01, b't', 0x12, 0x03, b'a', 0xe2, 0x82])),
            expect: InvalidArgument,
        },
        Case {
            class: "corrupt",
            modality: "image",
            what: "random bytes",
            send: Send::Request(one(image("i", FIXTURES.read("images/not_an_image.bin")))),
            expect: InvalidArgument,
        },
        Case {
            class: "corrupt",
            modality: "audio",
            what: "FLAC header, frames replaced by noise",
            send: Send::Request(one(audio("a", FIXTURES.read("audio/bad/corrupt.flac"), ""))),
            expect: InvalidArgument,
        },
        Case {
            class: "corrupt",
            modality: "point_cloud",
            what: "binary garbage",
            send: Send::Request(one(cloud_file("p", FIXTURES.read("point_cloud/bad/not_a_cloud.bin"), ""))),
            expect: InvalidArgument,
        },
        Case {
            class: "corrupt",
            modality: "any",
            what: "random bytes as the whole message (not protobuf)",
            send: Send::Raw(FIXTURES.read("images/not_an_image.bin")),
            expect: InvalidArgument,
        },
        // Oversized (limits of the server below).
        Case {
            class: "oversized",
            modality: "text",
            what: "text over --max-text-bytes",
            send: Send::Request(one(text("t", &"word ".repeat(400)))),
            expect: InvalidArgument,
        },
        Case {
            class: "oversized",
            modality: "image",
            what: "file over --max-image-bytes",
            send: Send::Request(one(image("i", FIXTURES.read("images/bmp_rgb24.bmp")))),
            expect: InvalidArgument,
        },
        Case {
            class: "oversized",
            modality: "audio",
            what: "file over --max-audio-bytes",
            send: Send::Request(one(audio("a", vec![0; 200_001], "wav"))),
            expect: InvalidArgument,
        },
        Case {
            class: "oversized",
            modality: "point_cloud",
            what: "packed arrays over --max-points",
            send: Send::Request(one(cloud_xyz("p", vec![0.5; 3 * 20_001]))),
            expect: InvalidArgument,
        },
        Case {
            class: "oversized",
            modality: "any",
            what: "message over --max-message-bytes",
            send: Send::Request(one(image("i", vec![0; 5 << 20]))),
            expect: OutOfRange,
        },
        // Wrong type.
        Case {
            class: "wrong type",
            modality: "text",
            what: "text field sent as a varint (protobuf wire type)",
            send: Send::Raw(raw_request(&[0x0a, 0x01, b't', 0x10, 0x05])),
            expect: InvalidArgument,
        },
        Case {
            class: "wrong type",
            modality: "image",
            what: "a WAV file as an image",
            send: Send::Request(one(image("i", FIXTURES.read("audio/cases/wav16k_short_0p05s.wav")))),
            expect: InvalidArgument,
        },
        Case {
            class: "wrong type",
            modality: "image",
            what: "a PCX file (a format the reference reads, bindery does not)",
            send: Send::Request(one(image("i", FIXTURES.read("images/formats/pcx.pcx")))),
            expect: InvalidArgument,
        },
        Case {
            class: "wrong type",
            modality: "audio",
            what: "a PNG file as audio",
            send: Send::Request(one(audio("a", good_png.clone(), "wav"))),
            expect: InvalidArgument,
        },
        Case {
            class: "wrong type",
            modality: "point_cloud",
            what: "a WAV file as a point cloud",
            send: Send::Request(one(cloud_file("p", good_wav.clone(), ""))),
            expect: InvalidArgument,
        },
        Case {
            class: "wrong type",
            modality: "point_cloud",
            what: "xyz array whose length is not a multiple of 3",
            send: Send::Request(one(cloud_xyz("p", vec![0.5; 7]))),
            expect: InvalidArgument,
        },
        // Adversarial headers: gRPC metadata, and file headers that lie.
        Case {
            class: "adversarial headers",
            modality: "any",
            what: "64 KiB of metadata (over HTTP/2 header list limit)",
            send: Send::Header("x-padding", "a".repeat(64 << 10), one(text("t", "a cat"))),
            expect: ResourceExhausted,
        },
        Case {
            class: "adversarial headers",
            modality: "any",
            what: "grpc-encoding the server does not support",
            send: Send::Header("grpc-encoding", "br".into(), one(text("t", "a cat"))),
            expect: Unimplemented,
        },
        Case {
            class: "adversarial headers",
            modality: "any",
            what: "malformed grpc-timeout (ignored)",
            send: Send::Header("grpc-timeout", "99999999999999H".into(), one(text("t", "a cat"))),
            expect: Ok,
        },
        Case {
            class: "adversarial headers",
            modality: "image",
            what: "PNG header declaring 100000x100000 pixels",
            send: Send::Request(one(image("i", PNG_BOMB_HEADER.to_vec()))),
            expect: InvalidArgument,
        },
        Case {
            class: "adversarial headers",
            modality: "audio",
            what: "WAV header declaring 4 GB of data, 1 KB present",
            send: Send::Request(one(audio("a", wav(1, 16_000, 16, u32::MAX - 36, &[0; 1000]), ""))),
            expect: InvalidArgument,
        },
        Case {
            class: "adversarial headers",
            modality: "audio",
            what: "WAV header declaring 4 GHz sample rate",
            send: Send::Request(one(audio("a", wav(1, 4_000_000_000, 16, 32_000, &[0; 32_000]), ""))),
            expect: InvalidArgument,
        },
        Case {
            class: "adversarial headers",
            modality: "audio",
            what: "WAV header declaring 65535 channels",
            send: Send::Request(one(audio("a", wav(65_535, 16_000, 16, 131_070, &[0; 131_070]), ""))),
            expect: InvalidArgument,
        },
        Case {
            class: "adversarial headers",
            modality: "point_cloud",
            what: "PLY header declaring 4 000 000 000 vertices",
            send: Send::Request(one(cloud_file("p", FIXTURES.read("point_cloud/bad/huge_count.ply"), "ply"))),
            expect: InvalidArgument,
        },
        // NaN payloads.
        Case {
            class: "NaN payloads",
            modality: "audio",
            what: "float WAV, every sample NaN",
            send: Send::Request(one(audio("a", float_wav(|_| f32::NAN), ""))),
            expect: InvalidArgument,
        },
        Case {
            class: "NaN payloads",
            modality: "audio",
            what: "float WAV, one sample in 100 infinite",
            send: Send::Request(one(audio(
                "a",
                float_wav(|i| if i % 100 == 0 { f32::INFINITY } else { (i as f32 * 0.05).sin() * 0.3 }),
                "",
            ))),
            expect: InvalidArgument,
        },
        Case {
            class: "NaN payloads",
            modality: "point_cloud",
            what: "xyz arrays, every coordinate NaN",
            send: Send::Request(one(cloud_xyz("p", vec![f32::NAN; 300]))),
            expect: InvalidArgument,
        },
        Case {
            class: "NaN payloads",
            modality: "point_cloud",
            what: "xyz arrays, some points NaN/inf (dropped and counted)",
            send: Send::Request(one(cloud_xyz(
                "p",
                (0..300)
                    .map(|i| {
                        if i % 10 == 0 {
                            f32::NAN
                        } else if i % 7 == 0 {
                            f32::INFINITY
                        } else {
                            i as f32
                        }
                    })
                    .collect(),
            ))),
            expect: Ok,
        },
        // Empty.
        Case {
            class: "empty",
            modality: "text",
            what: "empty string",
            send: Send::Request(one(text("t", ""))),
            expect: InvalidArgument,
        },
        Case {
            class: "empty",
            modality: "image",
            what: "0 bytes",
            send: Send::Request(one(image("i", Vec::new()))),
            expect: InvalidArgument,
        },
        Case {
            class: "empty",
            modality: "audio",
            what: "0 bytes",
            send: Send::Request(one(audio("a", Vec::new(), ""))),
            expect: InvalidArgument,
        },
        Case {
            class: "empty",
            modality: "point_cloud",
            what: "0 bytes with a PLY hint",
            send: Send::Request(one(cloud_file("p", Vec::new(), "ply"))),
            expect: InvalidArgument,
        },
        Case {
            class: "empty",
            modality: "any",
            what: "request without inputs",
            send: Send::Raw(Vec::new()),
            expect: InvalidArgument,
        },
    ];
    cases.push(Case {
        class: "empty",
        modality: "point_cloud",
        what: "empty xyz array",
        send: Send::Request(one(cloud_xyz("p", Vec::new()))),
        expect: InvalidArgument,
    });
    cases.extend(thermal_cases(&good_png, &good_wav));
    cases.extend(imu_cases(&good_png));
    cases.extend(depth_cases(&good_png, &good_wav));
    #[cfg(feature = "video")]
    cases.extend(video_cases());
    cases
}

fn imu(id: &str, imu: pb::Imu) -> pb::Input {
    pb::Input { id: id.into(), payload: Some(pb::input::Payload::Imu(imu)) }
}

fn depth(id: &str, data: Vec<u8>) -> pb::Input {
    pb::Input {
        id: id.into(),
        payload: Some(pb::input::Payload::DepthMap(pb::Depth { data, ..Default::default() })),
    }
}

/// Depth maps: 16-bit images and NPY arrays in metres.
fn depth_cases(good_png: &[u8], good_wav: &[u8]) -> Vec<Case> {
    use Code::*;
    let map = Fixtures("depth").read("kinect_640x480.png");
    let npy = Fixtures("depth").read("metres_320x240.npy");
    let case = |class, what, data: Vec<u8>| Case {
        class,
        modality: "depth",
        what,
        send: Send::Request(one(depth("d", data))),
        expect: InvalidArgument,
    };
    let mut huge_header = map[..33].to_vec();
    huge_header[16..24].copy_from_slice(&[0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0]);
    let mut holes = b"\x93NUMPY\x01\x00".to_vec();
    let dictionary = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }\n";
    holes.extend_from_slice(&(dictionary.len() as u16).to_le_bytes());
    holes.extend_from_slice(dictionary.as_bytes());
    for v in [f32::NAN, 0.0, f32::INFINITY, -2.0] {
        holes.extend_from_slice(&v.to_le_bytes());
    }
    vec![
        case("truncated", "NPY in metres cut inside its data", npy[..npy.len() / 3].to_vec()),
        case(
            "corrupt",
            "random bytes",
            (0..3000u32).map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8).collect(),
        ),
        case("oversized", "file over --max-depth-bytes", map),
        case("wrong type", "a WAV file as a depth map", good_wav.to_vec()),
        case("wrong type", "an 8-bit colour photo under the disparity conversion", good_png.to_vec()),
        case("adversarial headers", "16-bit PNG header declaring 100000x100000 pixels", huge_header),
        case("NaN payloads", "NPY whose every pixel is NaN, 0, inf or negative", holes),
        case("empty", "0 bytes", Vec::new()),
    ]
}

/// IMU series: files (CSV, NPY) and packed values.
fn imu_cases(good_png: &[u8]) -> Vec<Case> {
    use Code::*;
    let csv = Fixtures("imu").read("weaviate_2000.csv");
    let npy = Fixtures("imu").read("channel_major.npy");
    let case = |class, what, input: pb::Imu| Case {
        class,
        modality: "imu",
        what,
        send: Send::Request(one(imu("m", input))),
        expect: InvalidArgument,
    };
    let file = |data: Vec<u8>| pb::Imu { data, ..Default::default() };
    let values = |values: Vec<f32>, channels| pb::Imu { values, channels, ..Default::default() };
    let mut nan = vec![0.5f32; 600];
    nan[250] = f32::NAN;
    // An NPY version 1 header (magic, version, length, dictionary) and no data.
    let dictionary = "{'descr': '<f4', 'fortran_order': False, 'shape': (6, 9999999999), }\n";
    let mut huge_npy = b"\x93NUMPY\x01\x00".to_vec();
    huge_npy.extend_from_slice(&(dictionary.len() as u16).to_le_bytes());
    huge_npy.extend_from_slice(dictionary.as_bytes());
    vec![
        case("truncated", "NPY cut inside its data", file(npy[..npy.len() / 2].to_vec())),
        case(
            "corrupt",
            "CSV with a non-numeric field",
            file(
                b"a_x,a_y,a_z,g_x,g_y,g_z
1,2,3,4,five,6
"
                .to_vec(),
            ),
        ),
        case("oversized", "CSV over --max-imu-bytes", file(csv)),
        case("wrong type", "a PNG file as an IMU series", file(good_png.to_vec())),
        case("wrong type", "packed values with 3 channels", values(vec![0.0; 30], 3)),
        case("adversarial headers", "NPY header declaring 6 x 9999999999 samples", file(huge_npy)),
        case("NaN payloads", "packed values with one NaN", values(nan, 6)),
        case("empty", "no values and no file", values(Vec::new(), 6)),
    ]
}

/// Thermal images: every class that applies to an encoded single-channel image.
fn thermal_cases(good_png: &[u8], good_wav: &[u8]) -> Vec<Case> {
    use Code::*;
    let frame = Fixtures("thermal").read("gray8_640x512.png");
    let mut huge_header = frame[..33].to_vec();
    huge_header[16..24].copy_from_slice(&[0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0]);
    let case = |class, what, data: Vec<u8>| Case {
        class,
        modality: "thermal",
        what,
        send: Send::Request(one(thermal("t", data))),
        expect: InvalidArgument,
    };
    vec![
        case("truncated", "16-bit TIFF cut in the middle of its image data", {
            let tiff = Fixtures("thermal").read("gray16_336x256.tif");
            tiff[..tiff.len() / 2].to_vec()
        }),
        case(
            "corrupt",
            "random bytes",
            (0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect(),
        ),
        case("oversized", "file over --max-thermal-bytes", Fixtures("thermal").read("gray16_640x512.png")),
        case("wrong type", "a WAV file as a thermal image", good_wav.to_vec()),
        case("adversarial headers", "PNG header declaring 100000x100000 pixels", huge_header),
        case("empty", "0 bytes", Vec::new()),
        Case {
            class: "wrong type",
            modality: "thermal",
            what: "a colour photo (accepted: converted to grey like the reference)",
            send: Send::Request(one(thermal("t", good_png.to_vec()))),
            expect: Ok,
        },
    ]
}

/// Videos (with the `video` feature): every class that applies to an encoded video, and the two
/// requests a good file can make wrongly (a sound track it lacks, negative segments).
#[cfg(feature = "video")]
fn video_cases() -> Vec<Case> {
    use Code::*;
    let clip = Fixtures("video").read("cases/h264.mp4");
    let with = |what, data: Vec<u8>, with_audio: bool, segment_seconds: f32| Case {
        class: "",
        modality: "video",
        what,
        send: Send::Request(one(pb::Input {
            id: "v".into(),
            payload: Some(pb::input::Payload::Video(pb::Video {
                data,
                with_audio,
                segment_seconds,
                ..Default::default()
            })),
        })),
        expect: InvalidArgument,
    };
    let case = |class, what, data: Vec<u8>| Case { class, ..with(what, data, false, 0.0) };
    vec![
        // FFmpeg writes the MP4 index at the end: the cut file has none.
        case("truncated", "H.264 MP4 cut to its first third", clip[..clip.len() / 3].to_vec()),
        case(
            "corrupt",
            "random bytes",
            (0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect(),
        ),
        case("oversized", "file over --max-video-bytes", Fixtures("video").read("cases/with_audio.mp4")),
        case(
            "wrong type",
            "an AAC M4A (no video stream)",
            Fixtures("audio_lossy").read("cases/aac_16000_mono_short.m4a"),
        ),
        case(
            "wrong type",
            "an AVI whose codec FFmpeg lacks",
            Fixtures("video").read("bad/unknown_codec.avi"),
        ),
        case("adversarial headers", "MKV declaring 10 hours", Fixtures("video").read("bad/ten_hours.mkv")),
        case("empty", "0 bytes", Vec::new()),
        Case {
            class: "wrong type",
            ..with("with_audio on a video without a sound track", clip.clone(), true, 0.0)
        },
        Case { class: "wrong type", ..with("negative segment_seconds", clip, false, -2.0) },
    ]
}

async fn send(channel: &Channel, send: Send) -> Result<(), Status> {
    let mut client = bindery::api::pb::embedder_client::EmbedderClient::new(channel.clone())
        .max_encoding_message_size(64 << 20);
    match send {
        Send::Request(r) => client.embed(r).await.map(|_| ()),
        Send::Header(name, value, r) => {
            let mut request = Request::new(r);
            request.metadata_mut().insert(name, value.parse().unwrap());
            client.embed(request).await.map(|_| ())
        }
        Send::Raw(bytes) => raw_unary(channel, "/bindery.v1.Embedder/Embed", bytes).await.map(|_| ()),
    }
}

#[tokio::test]
async fn every_bad_input_class_gets_its_status_and_the_server_keeps_serving() {
    let mut options = fixture_options();
    options.limits.inputs.update(|l: &mut bindery::modality::text::TextLimits| l.max_bytes = 1024);
    options.limits.inputs.update(|l: &mut bindery::modality::image::ImageLimits| l.max_bytes = 100_000);
    options.limits.inputs.update(|l: &mut bindery::modality::audio::AudioLimits| l.max_bytes = 200_000);
    options
        .limits
        .inputs
        .update(|l: &mut bindery::modality::point_cloud::PointCloudLimits| l.max_points = 20_000);
    options.limits.inputs.update(|l: &mut bindery::modality::thermal::ThermalLimits| l.max_bytes = 170_000);
    options.limits.inputs.update(|l: &mut bindery::modality::imu::ImuLimits| l.max_bytes = 100_000);
    options.limits.inputs.update(|l: &mut bindery::modality::depth::DepthLimits| l.max_bytes = 200_000);
    #[cfg(feature = "video")]
    options.limits.inputs.update(|l: &mut bindery::modality::video::VideoLimits| l.max_bytes = 40_000);
    options.max_message_bytes = 4 << 20;
    let mut server = start(options).await;
    let (good_png, good_wav) =
        (FIXTURES.read("images/png_rgb.png"), FIXTURES.read("audio/cases/wav16k_mono_s16_5s.wav"));
    let good_cloud: Vec<f32> = (0..900).map(|i| ((i * 37) % 101) as f32 / 100.0).collect();
    // A good request of the case's own modality: a failure must not have broken that pipeline.
    let good = |modality: &str| match modality {
        "image" => request(vec![image("good", good_png.clone())]),
        "audio" => request(vec![audio("good", good_wav.clone(), "")]),
        "point_cloud" => request(vec![cloud_xyz("good", good_cloud.clone())]),
        "thermal" => request(vec![thermal("good", good_png.clone())]),
        "depth" => request(vec![depth("good", Fixtures("depth").read("row_1x300.png"))]),
        "video" => request(vec![pb::Input {
            id: "good".into(),
            payload: Some(pb::input::Payload::Video(pb::Video {
                data: Fixtures("video").read("cases/ffv1.mkv"),
                ..Default::default()
            })),
        }]),
        "imu" => {
            request(vec![imu("good", pb::Imu { values: vec![0.25; 600], channels: 6, ..Default::default() })])
        }
        _ => request(vec![text("good", "a red cube")]),
    };

    let mut table = vec!["| class | modality | input | status | served after |".to_string()];
    table.push("| --- | --- | --- | --- | --- |".into());
    let mut failures = Vec::new();
    for case in cases() {
        let input_id = match &case.send {
            Send::Request(r) | Send::Header(_, _, r) => r.inputs.first().map(|i| i.id.clone()),
            Send::Raw(_) => None,
        };
        let got = send(&server.channel, case.send).await;
        let code = got.as_ref().err().map_or(Code::Ok, Status::code);
        let message = got.as_ref().err().map(|s| s.message().to_string()).unwrap_or_default();
        if code != case.expect {
            failures.push(format!(
                "{} / {} / {}: expected {:?}, got {code:?}: {message}",
                case.class, case.modality, case.what, case.expect
            ));
        }
        // A refused input is named, with its modality, before the problem.
        if let (Code::InvalidArgument, Some(id)) = (code, &input_id) {
            let named = format!("input {id:?} ({}): ", case.modality);
            if !message.starts_with(&named) {
                failures.push(format!(
                    "{} / {}: message does not start with {named:?}: {message}",
                    case.class, case.what
                ));
            }
        }
        // The next good request of the same modality, on the same connection, is served.
        let after = server.client.embed(good(case.modality)).await;
        if let Err(s) = &after {
            failures.push(format!("{} / {}: good request after it failed: {s:?}", case.class, case.what));
        }
        let shown = if message.len() > 90 {
            format!("{}...", &message[..message.floor_char_boundary(90)])
        } else {
            message
        };
        table.push(format!(
            "| {} | {} | {} | `{:?}`{} | {} |",
            case.class,
            case.modality,
            case.what,
            code,
            if shown.is_empty() { String::new() } else { format!(": {}", shown.replace('|', "\\|")) },
            if after.is_ok() { "yes" } else { "NO" }
        ));
    }
    // RELIABILITY.md shows this table; it must say what the server really answers.
    let doc = std::fs::read_to_string(repo().join("RELIABILITY.md")).expect("RELIABILITY.md");
    for row in &table {
        if !doc.contains(row.as_str()) {
            failures.push(format!(
                "RELIABILITY.md lacks this row (rerun with --nocapture and copy the table):\n{row}"
            ));
        }
    }
    println!("{}", table.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
