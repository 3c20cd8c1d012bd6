//! The `image_folder`, `npy` and `npz` readers on real data: the embedded UCI digits written out
//! as PNG and JPEG files (with the `image` crate) and as NumPy arrays (with the venv's numpy),
//! read back against the `csv` reader, and trained on through the binary.

use std::path::{Path, PathBuf};
use torchfit::readers::{csv, image_folder, npy};
use torchfit_sdk::tch::Tensor;
use torchfit_sdk::{BuildContext, DatasetReader, Stage};
use torchfit_tests::{history_without, python, read_json, root, temp_dir, torchfit_env};

fn digits_csv() -> PathBuf {
    root().join("examples/digits/digits.csv.gz")
}

fn ctx(dir: &Path) -> BuildContext {
    BuildContext {
        input_shape: vec![],
        n_outputs: 0,
        base_dir: dir.to_path_buf(),
        ..torchfit_sdk::testing::context("dataset")
    }
}

/// The digits through the `csv` reader: `[1797, 64]` pixels in 0..16 and the labels.
fn digits() -> (Tensor, Tensor) {
    let cfg = serde_json::json!({"path": digits_csv()});
    let mut r = csv::build(&cfg, &ctx(&root())).unwrap();
    let all: Vec<i64> = (0..r.len() as i64).collect();
    r.get(&all).unwrap()
}

/// Writes every digit as an 8x8 grayscale image (pixel = 15 x value) under `dir/<label>/`: PNG,
/// and every `jpeg_every`-th as a quality-100 JPEG. Returns the file count.
fn write_images(dir: &Path, jpeg_every: usize) -> usize {
    let (x, y) = digits();
    let n = y.size()[0] as usize;
    let x = Vec::<f32>::try_from(x.flatten(0, -1)).unwrap();
    let y = Vec::<i64>::try_from(y).unwrap();
    for (i, label) in y.iter().enumerate() {
        let class = dir.join(label.to_string());
        std::fs::create_dir_all(&class).unwrap();
        let pixels: Vec<u8> = x[i * 64..(i + 1) * 64].iter().map(|&v| (v * 15.0) as u8).collect();
        let img = image::GrayImage::from_raw(8, 8, pixels).unwrap();
        if jpeg_every > 0 && i % jpeg_every == 0 {
            let f = std::fs::File::create(class.join(format!("{i:04}.jpg"))).unwrap();
            image::codecs::jpeg::JpegEncoder::new_with_quality(f, 100).encode_image(&img).unwrap();
        } else {
            img.save(class.join(format!("{i:04}.png"))).unwrap();
        }
    }
    n
}

fn folder(dir: &Path, extra: serde_json::Value) -> Box<dyn DatasetReader> {
    let mut cfg = serde_json::json!({"root": dir, "grayscale": true});
    cfg.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    image_folder::build(&cfg, &ctx(dir)).unwrap()
}

#[test]
fn an_image_folder_reads_the_pixels_and_classes_it_was_written_with() {
    let dir = temp_dir("image-folder-pixels");
    let n = write_images(&dir, 10);
    let mut r = folder(&dir, serde_json::json!({"workers": 3}));
    assert_eq!((r.len(), r.sample_shape()), (n, vec![1, 8, 8]));
    // Files are listed class by class; find each one's row in the CSV by its file name.
    let (x, y) = digits();
    let all: Vec<i64> = (0..n as i64).collect();
    let (fx, fy) = r.get(&all).unwrap();
    let targets = Vec::<i64>::try_from(r.targets().unwrap()).unwrap();
    assert_eq!(Vec::<i64>::try_from(&fy).unwrap(), targets);
    let mut files: Vec<PathBuf> =
        (0..10).flat_map(|c| std::fs::read_dir(dir.join(c.to_string())).unwrap().map(|e| e.unwrap().path())).collect();
    files.sort();
    let (mut png_err, mut jpeg_err) = (0f64, 0f64);
    for (k, file) in files.iter().enumerate() {
        let row: i64 = file.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        assert_eq!(y.int64_value(&[row]), targets[k], "{}", file.display());
        let want = x.get(row).g_div_scalar(17.0); // 15 v / 255
        let err = (fx.get(k as i64).flatten(0, -1) - want).abs().max().double_value(&[]);
        if file.extension().unwrap() == "png" {
            png_err = png_err.max(err)
        } else {
            jpeg_err = jpeg_err.max(err)
        }
    }
    assert!(png_err < 1e-6, "PNG is lossless: {png_err}");
    assert!(jpeg_err > 0.0 && jpeg_err < 0.05, "JPEG at quality 100 is close: {jpeg_err}");
}

#[test]
fn random_transforms_change_with_the_epoch_and_replay_with_it() {
    let dir = temp_dir("image-folder-random");
    write_images(&dir, 0);
    let chain = serde_json::json!({"transforms": [{"resize": 16}, {"random_resized_crop": {"size": 12, "scale": [0.5, 1.0]}}, {"random_horizontal_flip": 0.5}, {"normalize": {"mean": [0.5], "std": [0.25]}}], "eval_transforms": [{"resize": 16}, {"center_crop": 12}]});
    let mut one = folder(&dir, chain.clone());
    let mut four = folder(&dir, {
        let mut c = chain.clone();
        c["workers"] = 4.into();
        c
    });
    assert_eq!(one.sample_shape(), vec![1, 12, 12]);
    let idx: Vec<i64> = (0..40).collect();
    let read = |r: &mut Box<dyn DatasetReader>, epoch| {
        r.reset(epoch, 7).unwrap();
        Vec::<f32>::try_from(r.get(&idx).unwrap().0.flatten(0, -1)).unwrap()
    };
    let (a, b) = (read(&mut one, 1), read(&mut four, 1));
    assert_eq!(a, b, "the worker count does not change the images");
    assert_eq!(a, read(&mut one, 1), "reading again replays the epoch");
    assert_ne!(a, read(&mut one, 2), "another epoch crops differently");
    assert!(a.iter().any(|&v| v < -1.0) && a.iter().any(|&v| v > 1.0), "normalized around 0.5 with std 0.25");
}

#[test]
fn evaluation_samples_get_the_eval_transforms_and_never_the_random_ones() {
    let dir = temp_dir("image-folder-eval");
    write_images(&dir, 0);
    let idx: Vec<i64> = (0..40).collect();
    let read = |r: &mut Box<dyn DatasetReader>, stage, epoch| {
        r.set_stage(stage).unwrap();
        r.reset(epoch, 7).unwrap();
        Vec::<f32>::try_from(r.get(&idx).unwrap().0.flatten(0, -1)).unwrap()
    };
    // Without eval_transforms, evaluation drops the random steps: a flip that always happens in
    // training never happens in evaluation.
    let mut flipped = folder(&dir, serde_json::json!({"transforms": [{"random_horizontal_flip": 1.0}]}));
    let mut plain = folder(&dir, serde_json::json!({}));
    let as_is = read(&mut plain, Stage::Train, 1);
    assert_ne!(read(&mut flipped, Stage::Train, 1), as_is);
    assert_eq!(read(&mut flipped, Stage::Eval, 1), as_is);
    // A random crop has no size without its random step: eval_transforms is asked for, by name.
    let crop = serde_json::json!([{"resize": 16}, {"random_resized_crop": {"size": 12, "scale": [0.5, 1.0]}}]);
    let cfg = serde_json::json!({"root": dir, "grayscale": true, "transforms": crop});
    let e = image_folder::build(&cfg, &ctx(&dir)).err().unwrap().to_string();
    assert!(e.contains("eval_transforms") && e.contains("[1, 12, 12]"), "{e}");
    let eval = serde_json::json!([{"resize": 16}, {"center_crop": 12}]);
    let mut r = folder(&dir, serde_json::json!({"transforms": crop, "eval_transforms": eval.clone()}));
    assert_ne!(read(&mut r, Stage::Train, 1), read(&mut r, Stage::Train, 2), "training crops change");
    let evaluated = read(&mut r, Stage::Eval, 1);
    assert_eq!(evaluated, read(&mut r, Stage::Eval, 2), "evaluation is the same every epoch");
    assert_eq!(evaluated, read(&mut folder(&dir, serde_json::json!({"transforms": eval})), Stage::Train, 1));
}

#[test]
fn an_unreadable_image_or_an_empty_folder_is_named() {
    let dir = temp_dir("image-folder-bad");
    std::fs::create_dir_all(dir.join("cat")).unwrap();
    let cfg = serde_json::json!({"root": dir});
    let e = image_folder::build(&cfg, &ctx(&dir)).err().unwrap().to_string();
    assert!(e.contains("no images") && e.contains(&dir.display().to_string()), "{e}");
    image::RgbImage::new(4, 4).save(dir.join("cat/a.png")).unwrap();
    std::fs::write(dir.join("cat/b.png"), b"not a png").unwrap();
    let mut r = image_folder::build(&cfg, &ctx(&dir)).unwrap();
    assert_eq!(r.sample_shape(), vec![3, 4, 4]);
    let e = r.get(&[1]).unwrap_err().to_string();
    assert!(e.contains("b.png"), "{e}");
    image::RgbImage::new(5, 4).save(dir.join("cat/b.png")).unwrap();
    let e = r.get(&[0, 1]).unwrap_err().to_string();
    assert!(e.contains("b.png") && e.contains("resize"), "a second size is refused: {e}");
    let e = image_folder::build(
        &serde_json::json!({"root": dir, "transforms": [{"normalize": "imagenet"}, {"resize": 2}]}),
        &ctx(&dir),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("transforms") && e.contains("last"), "{e}");
}

fn write_config(dir: &Path, dataset: &str, extra: &str) -> PathBuf {
    let text = format!("seed = 0\nmax_epochs = 8\nthreads = 2\n[dataset]\n{dataset}\n[module]\nname = \"mlp\"\nhidden = [64]\n[optimizer]\nname = \"sgd\"\nlr = 0.1\nmomentum = 0.9\n[iterator_train]\nbatch_size = 32\n{extra}");
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn train(config: &Path, out: &Path) -> serde_json::Value {
    let o = torchfit_env(&["train", config.to_str().unwrap(), "--out", out.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    read_json(&out.join("history.json"))
}

#[test]
fn digits_train_from_an_image_folder_with_augmentation_and_prefetching_reproducibly() {
    let dir = temp_dir("image-folder-train");
    write_images(&dir.join("images"), 0);
    let dataset = "name = \"image_folder\"\nroot = \"images\"\ngrayscale = true\ntransforms = [{ random_resized_crop = { size = 8, scale = [0.85, 1.0], ratio = [0.9, 1.1] } }, { normalize = { mean = [0.3], std = [0.35] } }]";
    let inline = train(&write_config(&dir, &format!("{dataset}\nworkers = 1"), ""), &dir.join("inline"));
    let prefetched = train(
        &write_config(&dir, &format!("{dataset}\nworkers = 2"), "prefetch = 4\n[iterator_valid]\nprefetch = 2"),
        &dir.join("prefetched"),
    );
    let acc = inline.as_array().unwrap().last().unwrap()["valid_acc"].as_f64().unwrap();
    assert!(acc > 0.9, "valid_acc {acc}");
    assert_eq!(
        history_without(&dir.join("inline"), &["dur"]),
        history_without(&dir.join("prefetched"), &["dur"]),
        "workers and prefetching change nothing but time"
    );
    assert!(prefetched.as_array().unwrap().len() == 8);
}

#[test]
fn digits_train_under_rotations_affine_maps_and_colour_jitter_reproducibly() {
    let dir = temp_dir("image-folder-geometry");
    write_images(&dir.join("images"), 0);
    let dataset = "name = \"image_folder\"\nroot = \"images\"\ngrayscale = true\ntransforms = [{ random_rotation = 10 }, { random_affine = { degrees = 0, translate = [0.1, 0.1], scale = [0.95, 1.05] } }, { color_jitter = { brightness = 0.2, contrast = 0.2 } }]";
    let one = train(&write_config(&dir, &format!("{dataset}\nworkers = 1"), ""), &dir.join("one"));
    let two = train(&write_config(&dir, &format!("{dataset}\nworkers = 2"), ""), &dir.join("two"));
    let acc = one.as_array().unwrap().last().unwrap()["valid_acc"].as_f64().unwrap();
    assert!(acc > 0.85, "valid_acc {acc}");
    assert_eq!(history_without(&dir.join("one"), &["dur"]), history_without(&dir.join("two"), &["dur"]));
    assert_eq!(two.as_array().unwrap().len(), one.as_array().unwrap().len());
}

const NUMPY: &str = r#"
import gzip, sys, numpy as np
d = np.loadtxt(gzip.open(sys.argv[1]), delimiter=",")
x, y = d[:, :64].astype(np.uint8), d[:, 64].astype(np.int64)
np.save(sys.argv[2] + "/x.npy", x)
np.save(sys.argv[2] + "/y.npy", y)
np.save(sys.argv[2] + "/x64.npy", x.astype(np.float64).reshape(-1, 8, 8))
np.savez_compressed(sys.argv[2] + "/digits.npz", images=x.astype(np.float32), labels=y.astype(np.int32))
def idx(path, a):
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape) + a.astype(np.uint8).tobytes())
idx(sys.argv[2] + "/images.idx", x.reshape(-1, 8, 8))
idx(sys.argv[2] + "/labels.idx", y)
"#;

fn numpy_files(dir: &Path) {
    std::fs::write(dir.join("make.py"), NUMPY).unwrap();
    let o = std::process::Command::new(python()).arg(dir.join("make.py")).arg(digits_csv()).arg(dir).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn numpy_arrays_read_as_the_csv_does_whatever_their_dtype() {
    let dir = temp_dir("numpy-values");
    numpy_files(&dir);
    let (x, y) = digits();
    let all: Vec<i64> = (0..y.size()[0]).collect();
    for cfg in [
        serde_json::json!({"x": "x.npy", "y": "y.npy", "scale": 16.0, "shape": [64]}),
        serde_json::json!({"x": "x64.npy", "y": "y.npy", "scale": 16.0, "shape": [64]}),
    ] {
        let mut r = npy::build_npy(&cfg, &ctx(&dir)).unwrap();
        let (rx, ry) = r.get(&all).unwrap();
        assert!((rx - &x / 16.0).abs().max().double_value(&[]) < 1e-7, "{cfg}");
        assert_eq!(Vec::<i64>::try_from(&ry).unwrap(), Vec::<i64>::try_from(&y).unwrap());
    }
    let mut z = npy::build_npz(
        &serde_json::json!({"path": "digits.npz", "x": "images", "y": "labels", "shape": [1, 8, 8], "limit": 100}),
        &ctx(&dir),
    )
    .unwrap();
    assert_eq!((z.len(), z.sample_shape()), (100, vec![1, 8, 8]));
    let (zx, zy) = z.get(&[99, 3]).unwrap();
    assert_eq!(zx.flatten(1, -1), x.index_select(0, &Tensor::from_slice(&[99i64, 3])));
    assert_eq!(zy.kind(), tch::Kind::Int64, "int32 labels become class indices");
    let e = npy::build_npz(&serde_json::json!({"path": "digits.npz"}), &ctx(&dir)).err().unwrap().to_string();
    assert!(e.contains("digits.npz") && e.contains("'x'") && e.contains("images"), "{e}");
    let e = npy::build_npy(&serde_json::json!({"x": "x.npy", "y": "make.py"}), &ctx(&dir)).err().unwrap().to_string();
    assert!(e.contains("make.py"), "{e}");
}

#[test]
fn digits_train_from_a_streamed_npy_file() {
    let dir = temp_dir("numpy-train");
    numpy_files(&dir);
    let h = train(
        &write_config(&dir, "name = \"npy\"\nx = \"x.npy\"\ny = \"y.npy\"\nscale = 16.0", "prefetch = 2"),
        &dir.join("run"),
    );
    let acc = h.as_array().unwrap().last().unwrap()["valid_acc"].as_f64().unwrap();
    assert!(acc > 0.9, "valid_acc {acc}");
    predict_data_equals_predict(&dir.join("run"), &dir.join("x.npy"));
}

/// `predict --data FILE` on the run's own inputs (without their targets) predicts what `predict`
/// does on the run's data set.
fn predict_data_equals_predict(run: &Path, data: &Path) {
    let own = torchfit_env(&["predict", run.to_str().unwrap()], &[]);
    assert!(own.status.success(), "{}", String::from_utf8_lossy(&own.stderr));
    let given = torchfit_env(&["predict", run.to_str().unwrap(), "--data", data.to_str().unwrap()], &[]);
    assert!(given.status.success(), "{}", String::from_utf8_lossy(&given.stderr));
    assert_eq!(String::from_utf8_lossy(&given.stdout).lines().count(), 1 + 1797, "a header and a row per sample");
    assert_eq!(given.stdout, own.stdout);
}

#[test]
fn predict_data_reads_a_new_file_with_the_runs_reader_whichever_it_is() {
    let dir = temp_dir("predict-data");
    numpy_files(&dir);
    let idx = "name = \"idx\"\nimages = \"images.idx\"\nlabels = \"labels.idx\"\nscale = 16.0";
    let config = write_config(&dir, idx, "").to_str().unwrap().to_owned();
    let run = dir.join("idx-run");
    let o = torchfit_env(&["train", &config, "--set", "max_epochs=2", "--out", run.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    predict_data_equals_predict(&run, &dir.join("images.idx"));
    write_images(&dir.join("images"), 0);
    let folder = "name = \"image_folder\"\nroot = \"images\"\ngrayscale = true";
    let config = write_config(&dir, folder, "").to_str().unwrap().to_owned();
    let run = dir.join("folder-run");
    let o = torchfit_env(&["train", &config, "--set", "max_epochs=1", "--out", run.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    predict_data_equals_predict(&run, &dir.join("images"));
}

#[test]
fn predict_takes_a_flat_folder_or_one_image_and_names_each_row_by_its_file() {
    let dir = temp_dir("predict-images");
    write_images(&dir.join("images"), 0);
    let folder = "name = \"image_folder\"\nroot = \"images\"\ngrayscale = true";
    let config = write_config(&dir, folder, "").to_str().unwrap().to_owned();
    let run = dir.join("run");
    let o = torchfit_env(&["train", &config, "--set", "max_epochs=2", "--out", run.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let predict = |data: Option<&Path>| {
        let mut args = vec!["predict".to_owned(), run.display().to_string(), "--proba".into()];
        if let Some(d) = data {
            args.extend(["--data".into(), d.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = torchfit_env(&args, &[]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    // The run's own data: rows named by their path under the root, class folder first.
    let all = predict(None);
    let row = |text: &str, id: &str| text.lines().find(|l| l.split(',').next() == Some(id)).map(str::to_owned);
    let seven = std::fs::read_dir(dir.join("images/7")).unwrap().map(|e| e.unwrap().path()).min().unwrap();
    let name = seven.file_name().unwrap().to_str().unwrap().to_owned();
    let expected = row(&all, &format!("7/{name}")).expect("a row named 7/<file>");
    // The label, then the probabilities, equal to float32 rounding (a batch of another size sums
    // in another order).
    let same = |line: &str, want: &str| {
        let cells = |l: &str| l.split(',').skip(1).map(|c| c.parse::<f64>().unwrap()).collect::<Vec<_>>();
        let (got, want) = (cells(line), cells(want));
        got.len() == want.len() && got[0] == want[0] && got.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-6)
    };
    // A flat folder (no class folders) of three images, one of them that file.
    let flat = dir.join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    for f in [&seven, &dir.join("images/0").read_dir().unwrap().next().unwrap().unwrap().path()] {
        std::fs::copy(f, flat.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::copy(&seven, flat.join("a, copy.png")).unwrap();
    let text = predict(Some(&flat));
    assert_eq!(text.lines().count(), 1 + 3, "{text}");
    assert!(same(&row(&text, &name).expect("named by file"), &expected), "{text}\n{expected}");
    assert!(text.lines().any(|l| l.starts_with("\"a, copy.png\",")), "a name with a comma is quoted: {text}");
    // One image file.
    let text = predict(Some(&seven));
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(same(text.lines().nth(1).unwrap(), &expected), "{text}\n{expected}");
}
