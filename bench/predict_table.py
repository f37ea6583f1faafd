"""Medians of bench/predict.sh's runs: measured against predicted decode and
prefill per model, link and layout, the error, and whether the predicted
order of the layouts matches the measured one wherever the measured rates
differ by more than 15%.

    python3 bench/predict_table.py RESULTS.jsonl
"""

import itertools
import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
groups = {}
for r in rows:
    key = (r["model"], r["link_name"], f"{r['layout']} x{r['nodes']}")
    groups.setdefault(key, []).append(r)


def median(key, runs):
    return statistics.median(r[key] for r in runs)


print("| model | link | layout | decode measured | decode predicted | error | prefill measured | prefill predicted | error |")
print("|---|---|---|---|---|---|---|---|---|")
table = {}
for (model, link, layout), runs in groups.items():
    d, dp = median("decode_tok_s", runs), median("predicted_decode_tok_s", runs)
    p, pp = median("prefill_tok_s", runs), median("predicted_prefill_tok_s", runs)
    table[(model, link, layout)] = (d, dp)
    print(
        f"| {model} | {link} | {layout} | {d:.2f} | {dp:.2f} | {(dp - d) / d:+.0%} "
        f"| {p:.1f} | {pp:.1f} | {(pp - p) / p:+.0%} |"
    )

within = sum(abs(dp - d) / d <= 0.25 for d, dp in table.values())
print(f"\ndecode predicted within 25% of measured: {within} of {len(table)}")
checked = agreed = 0
for (model, link) in sorted({(m, l) for m, l, _ in table}):
    layouts = [(lay, v) for (m, l, lay), v in table.items() if (m, l) == (model, link)]
    for (a, (da, pa)), (b, (db, pb)) in itertools.combinations(layouts, 2):
        if max(da, db) / min(da, db) <= 1.15:
            continue
        checked += 1
        if (da > db) == (pa > pb):
            agreed += 1
        else:
            print(f"order differs: {model} {link}: {a} {da:.2f} vs {b} {db:.2f} measured, predicted {pa:.2f} vs {pb:.2f}")
print(f"pairs differing by more than 15% measured: {checked}; predicted in the same order: {agreed}")
