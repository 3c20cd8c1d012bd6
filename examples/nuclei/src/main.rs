//! `generate-cells OUT [TRAIN VALID SIZE]`: the segmentation example's data, `OUT/train` and
//! `OUT/valid` (defaults: 24 and 6 images of 128 x 128 pixels).

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first().map(std::path::PathBuf::from) else {
        eprintln!("usage: generate-cells OUT [TRAIN VALID SIZE]");
        std::process::exit(2);
    };
    let number = |i: usize, default: u64| -> u64 {
        args.get(i).map_or(Ok(default), |a| a.parse()).unwrap_or_else(|_| {
            eprintln!("generate-cells: argument {i} ({:?}) is not a whole number", args[i]);
            std::process::exit(2)
        })
    };
    let (train, valid, size) = (number(1, 24), number(2, 6), number(3, 128));
    let written = nuclei_cells::write(&out.join("train"), train as usize, size as u32, 0)
        .and_then(|()| nuclei_cells::write(&out.join("valid"), valid as usize, size as u32, 1_000_000));
    if let Err(e) = written {
        eprintln!("generate-cells: {}: {e}", out.display());
        std::process::exit(3);
    }
    println!("{train} training and {valid} validation images of {size}x{size} in {}", out.display());
}
