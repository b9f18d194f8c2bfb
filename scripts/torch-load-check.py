#!/usr/bin/env python3
"""Check that PyTorch loads a checkpoint elis-sim wrote, as the vLLM patch
and the ELIS trainer would, and that its model_state_dict has the keys,
dtypes and shapes of a reference checkpoint.

    python3 scripts/torch-load-check.py tuned.pt [--like latest_model.pt]

Needs PyTorch (Debian: apt-get install python3-torch); not part of go test.
"""
import argparse
import sys

import torch


def load(path):
    """torch.load as the patch does; torch 1.x's weights-only reader lacks
    opcodes (floats) that the trainer's own checkpoints use, so there it
    falls back to the full reader, saying so."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True), "weights_only=True"
    except Exception as e:
        if int(torch.__version__.split(".")[0]) >= 2:
            raise
        return torch.load(path, map_location="cpu"), f"weights_only=False: torch {torch.__version__}'s weights-only reader refused it ({e.__class__.__name__}), as it refuses the trainer's files"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--like", help="reference checkpoint whose state dict layout must match")
    a = ap.parse_args()
    ck, how = load(a.checkpoint)
    sd = ck["model_state_dict"]
    print(f"{a.checkpoint}: torch {torch.__version__} loaded it ({how}); "
          f"{len(sd)} tensors, epoch {ck.get('epoch')}, metrics {ck.get('metrics')}")
    bad = 0
    if a.like:
        ref = load(a.like)[0]["model_state_dict"]
        if list(ref.keys()) != list(sd.keys()):
            print("keys differ:", sorted(set(ref) ^ set(sd)) or "order")
            bad += 1
        for k, v in ref.items():
            w = sd.get(k)
            if w is None or w.dtype != v.dtype or w.shape != v.shape:
                print(f"{k}: {None if w is None else (w.dtype, tuple(w.shape))}, want {(v.dtype, tuple(v.shape))}")
                bad += 1
            elif not k.startswith("predictor.") and not torch.equal(w, v):
                print(f"{k}: the encoder changed")
                bad += 1
        print("layout matches the reference" if bad == 0 else f"{bad} differences from the reference")
    # The head runs: a forward pass through the predictor's Linear layers.
    idx = sorted({int(k.split(".")[1]) for k in sd if k.startswith("predictor.")})
    x = torch.zeros(1, sd[f"predictor.{idx[0]}.weight"].shape[1])
    for i, n in enumerate(idx):
        x = x @ sd[f"predictor.{n}.weight"].T + sd[f"predictor.{n}.bias"]
        if i < len(idx) - 1:
            x = torch.relu(x)
    print(f"head on a zero encoding: {x.item():.6g}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
