"""Writes the example's two data sets from the embedded digits: pretrain.csv.gz holds the digits
0-5 (labels 0-5), finetune.csv.gz the digits 6-9 relabelled 0-3, so that no sample and no class
of the fine-tuning task was seen in pretraining. Run from this folder: python3 split.py"""
import gzip

rows = gzip.open("../digits/digits.csv.gz", "rt").read().splitlines()
for name, digits in [("pretrain", range(0, 6)), ("finetune", range(6, 10))]:
    kept = []
    for row in rows:
        *pixels, label = row.split(",")
        if int(label) in digits:
            kept.append(",".join(pixels + [str(int(label) - digits.start)]))
    with open(f"{name}.csv.gz", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(("\n".join(kept) + "\n").encode())
