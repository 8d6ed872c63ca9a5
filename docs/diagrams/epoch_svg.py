"""Writes docs/assets/epoch.svg, the diagram of one validator epoch (docs/rounds.md).

Hand-laid-out boxes, no dependencies: edit the texts below and run
`python docs/diagrams/epoch_svg.py` from the repository root. The numbers in the boxes
are the defaults of `--checks.max_per_epoch`, `--eval.max_challengers`, `--eval.rematch`
and the scoring spec (docs/scoring.md).
"""
from pathlib import Path

W = 820
out = []
def rect(x, y, w, h, fill, stroke):
    out.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>')
def text(x, y, s, size=13, weight="normal", anchor="middle", fill="#1a1a1a"):
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    out.append(f'<text x="{x}" y="{y}" font-size="{size}" font-weight="{weight}" text-anchor="{anchor}" fill="{fill}">{s}</text>')
def path(points):
    d = " ".join(f"{'M' if i == 0 else 'L'} {x} {y}" for i, (x, y) in enumerate(points))
    out.append(f'<path d="{d}" fill="none" stroke="#555" stroke-width="1.6" marker-end="url(#arrow)"/>')
def draw(b, title, lines, fill="#eef1fb", stroke="#3f51b5"):
    x, y, w, h = b
    rect(x, y, w, h, fill, stroke)
    top = y + (h - (20 + 17 * len(lines))) / 2 + 15
    text(x + w / 2, top, title, 14, "bold")
    for i, line in enumerate(lines):
        text(x + w / 2, top + 20 + 17 * i, line, 12.5)

cx, bw = 250, 420
x0 = cx - bw / 2
steps = [
    ("1  Sync", ["metagraph and every commitment on chain", "new commitment → pending; a second one is ignored"]),
    ("2  Pre-checks (CPU)", ["up to 16 pending commitments, earliest first", "files, config, safetensors headers, hashes, tokenizer, load"]),
    ("3  Integrity", ["king and every model of the round still public", "at its pinned revision"]),
    ("4  Plan the round", ["king + up to 8 new challengers", "(no king: + the 4 best evaluated models)"]),
    ("5  Prompts", ["seed = hash of the epoch's first block", "120 raw-text prompts from ClimbMix"]),
    ("6  Teacher pass (GPU)", ["greedy continuations, ≤ 512 tokens", "cache final hidden states; free the teacher"]),
    ("7  Score", ["each model on the same token ids:", "full-vocabulary KL(teacher ‖ student)"]),
    ("8  Decide", ["KL > 2 → KL_TOO_HIGH; cosine > 0.9999 → COPY", "dethrone: KL < king × 0.99 and paired t-test p < 0.05"]),
    ("9  Save, set weights, report", ["state.json written atomically", "king 1.0, everyone else 0; W&B round artifact"]),
]
y, h, gap = 20, 68, 22
pos = []
for _ in steps:
    pos.append((x0, y, bw, h))
    y += h + gap
H = y + 14
for i, ((title, lines), b) in enumerate(zip(steps, pos)):
    gpu = title.startswith(("6", "7"))
    draw(b, title, lines, *(("#fff4e0", "#e09a1a") if gpu else ("#eef1fb", "#3f51b5")))
    if i + 1 < len(pos):
        path([(cx, b[1] + h), (cx, pos[i + 1][1] - 2)])
text(cx + 10, pos[3][1] + h + 15, "a new challenger, or no king", 12, anchor="start", fill="#444")

sx, sw = 520, 280
mid = lambda b: b[1] + b[3] / 2
chain = (sx, pos[0][1], sw, h)
draw(chain, "Chain", ["miners commit namespace/name@sha", "once per hotkey, forever"], "#f3f3f3", "#777")
path([(sx, mid(chain)), (x0 + bw + 2, mid(chain))])
dq = (sx, pos[1][1], sw, pos[2][1] + h - pos[1][1])
draw(dq, "Disqualified (final)", ["INVALID, COPY, REMOVED, KL_TOO_HIGH,", "each with a code and a reason", "(from steps 2, 3 and 8)"], "#fdecea", "#c62828")
path([(x0 + bw, mid(pos[1])), (sx - 2, mid(pos[1]))])
path([(x0 + bw, mid(pos[2])), (sx - 2, mid(pos[2]))])
idle = (sx, pos[4][1], sw, pos[5][1] + h - pos[4][1])
draw(idle, "No challenger", ["no GPU work this epoch;", "the king keeps all the weight"], "#eaf6ea", "#2e7d32")
path([(x0 + bw, mid(pos[3])), (sx + sw / 2, mid(pos[3])), (sx + sw / 2, idle[1] - 2)])
path([(sx + sw / 2, idle[1] + idle[3]), (sx + sw / 2, mid(pos[8])), (x0 + bw + 2, mid(pos[8]))])
text(W / 2, H - 6, "one epoch = 50 blocks ≈ 10 minutes; the orange steps run on the GPU", 12, fill="#555")

svg = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="Helvetica, Arial, sans-serif" role="img" aria-label="One validator epoch">',
       '<title>One validator epoch</title>',
       '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
       f'<rect x="0" y="0" width="{W}" height="{H}" fill="#ffffff"/>'] + out + ['</svg>']
(Path(__file__).resolve().parents[1] / "assets" / "epoch.svg").write_text("\n".join(svg) + "\n")
