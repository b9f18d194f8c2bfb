#!/usr/bin/env python3
"""Synthetic ELIS training rows whose truth is learnable from the text: the
prompt's kind sets the answer's length (a haiku ~30 tokens, a summary ~150,
an essay ~600), and rows are cut every 50 generated tokens as the ELIS
trainer cuts them. A row's text so far is kept to what the encoder reads
(512 tokens with the prompt), as the trainer's tokenizer truncates it, so
`elis-sim predict eval` and `predict train` take every row as it is. For
checking that `elis-sim predict train` learns.

    python3 scripts/synthetic-elis-rows.py --prompts 300 --seed 1 > rows.jsonl
"""
import argparse
import json
import random

KINDS = [("Write a haiku about {}.", 30), ("Summarize {} in one short paragraph.", 150),
         ("Write a long, detailed essay about {}.", 600)]
TOPICS = ["the ocean", "mountains", "a robot", "the city at night", "autumn", "a lost key", "trains",
          "coffee", "the moon", "a garden", "old letters", "rain", "a library", "winter birds", "bridges",
          "a market", "the desert", "lighthouses", "music", "a bicycle"]
FILLER = "the of and a to in is it that was for on as with he be at by this had not are but from or have".split()

ap = argparse.ArgumentParser()
ap.add_argument("--prompts", type=int, default=300)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--interval", type=int, default=50)
a = ap.parse_args()
rng = random.Random(a.seed)
for p in range(a.prompts):
    template, mean = rng.choice(KINDS)
    prompt = template.format(rng.choice(TOPICS))
    total = max(1, int(rng.gauss(mean, mean * 0.1)))
    answer = [rng.choice(FILLER) for _ in range(total)]
    # Each filler word is one token of bge's vocabulary; the prompt's words
    # and punctuation, [CLS] and [SEP] take the rest of the 512.
    room = 512 - 2 - 2 * len(prompt.split())
    for g in range(0, total, a.interval):
        print(json.dumps({"input_prompt": prompt, "output_prompt": " ".join(answer[:min(g, room)]),
                          "number_of_output_tokens": total, "remaining_tokens": total - g}))
