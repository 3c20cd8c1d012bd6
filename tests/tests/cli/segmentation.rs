//! The segmentation example (`examples/nuclei`) through the binary, shortened: generated cells,
//! a U-Net on patches with reflected context, the padded loss, CyclicLR per batch, IoU scored
//! on separate images where the loss is, and the best IoU checkpointed; `torchfit predict
//! --masks` writes whole masks of new images as PNG files named after them; `torchfit explain
//! --method activations` draws a level's feature maps.

use torchfit_tests::{read_json, temp_dir, torchfit_env};

#[test]
fn a_unet_learns_the_generated_nuclei_to_a_stated_iou() {
    let dir = temp_dir("segmentation");
    nuclei_cells::write(&dir.join("train"), 16, 64, 0).unwrap();
    nuclei_cells::write(&dir.join("valid"), 2, 64, 1_000_000).unwrap();
    let run = dir.join("run");
    let path = |p: &str| format!("\"{}\"", dir.join(p).display());
    let sets = [
        format!("dataset__images={}", path("train/images")),
        format!("dataset__masks={}", path("train/masks")),
        format!("valid_dataset__images={}", path("valid/images")),
        format!("valid_dataset__masks={}", path("valid/masks")),
        "max_epochs=8".into(),
        "iterator_train__batch_size=8".into(),
        "callbacks__cyclic__step_size_up=16".into(),
    ];
    let mut args = vec!["train", "examples/nuclei/config.toml", "--out", run.to_str().unwrap()];
    for s in &sets {
        args.extend(["--set", s]);
    }
    let o = torchfit_env(&args, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let history = read_json(&run.join("history.json"));
    let epochs = history.as_array().unwrap();
    // 16 images of 64 x 64 in 32 x 32 patches: 64 training samples (64 x 64 with the context).
    assert_eq!(epochs.len(), 8);
    let sizes: i64 =
        epochs[0]["batches"].as_array().unwrap().iter().filter_map(|b| b["train_batch_size"].as_i64()).sum();
    assert_eq!(sizes, 64);
    let iou: Vec<f64> = epochs.iter().map(|e| e["valid_iou"].as_f64().unwrap()).collect();
    let best = iou.iter().cloned().fold(0.0, f64::max);
    assert!(best > 0.8, "valid_iou by epoch: {iou:?}");
    let lr: Vec<f64> = epochs[0]["batches"].as_array().unwrap().iter().filter_map(|b| b["event_lr"].as_f64()).collect();
    assert!(lr.windows(2).any(|w| w[1] > w[0]), "CyclicLR raises the rate batch by batch: {lr:?}");
    let best_epoch = iou.iter().position(|v| *v == best).unwrap();
    assert_eq!(epochs[best_epoch]["valid_iou_best"], true);
    let saved = read_json(&run.join("best_history.json"));
    assert_eq!(saved.as_array().unwrap().len(), best_epoch + 1, "the best IoU's epoch is checkpointed");

    // New images (the validation ones, without their masks): whole masks, named after them.
    let masks = dir.join("masks");
    let images = dir.join("valid/images");
    let o = torchfit_env(
        &["predict", run.to_str().unwrap(), "--data", images.to_str().unwrap(), "--masks", masks.to_str().unwrap()],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for k in 0..2 {
        let name = format!("cell{k:03}.png");
        let predicted = image::open(masks.join(&name)).unwrap().to_luma8();
        let truth = image::open(dir.join("valid/masks").join(&name)).unwrap().to_luma8();
        assert_eq!(predicted.dimensions(), (64, 64), "the patches put back together");
        let (mut inter, mut union) = (0, 0);
        for (p, t) in predicted.pixels().zip(truth.pixels()) {
            let (p, t) = (p[0] > 0, t[0] > 0);
            inter += usize::from(p && t);
            union += usize::from(p || t);
        }
        let iou = inter as f64 / union.max(1) as f64;
        assert!(iou > 0.7, "{name}: IoU of the written mask {iou}");
    }
    // The U-Net's feature maps: the first level's last convolution, one map per channel.
    let out = dir.join("conv1.png");
    let input = &images; // image_masks reads folders: the first patch is explained
    let o = torchfit_env(
        &["explain", run.to_str().unwrap(), "--input", input.to_str().unwrap(), "--method", "activations"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "no --layer");
    let o = torchfit_env(
        &[
            "explain",
            run.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--method",
            "activations",
            "--layer",
            "conv1.1",
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("activations of layer conv1.1"));
    assert!(image::open(&out).is_ok());
}
