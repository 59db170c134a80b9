"""Load-adaptive serving of a dynamic MIMOConv against fixed-mode serving (Poisson streams).

    python -m mimojax.main --config=experiments/mimoconv_mnist.py:n=4,dynamic,data=digits,epochs=5 \\
        --workdir=runs/serving/mimoconv-10-1-n4
    python benchmarks/serving.py --workdir=runs/serving/mimoconv-10-1-n4

A server takes requests (test images of the run's dataset) from one FIFO queue and answers
them in compiled calls of ``--batch_size`` images (``inference.Predictor``: one program per
mode, a partly filled call padded with filler that cannot change real outputs). Before each
call a policy picks the inputs per pass: fixed N = n for every divisor n of N, or adaptive
(``inference.Scheduler``: the fewest inputs per pass that serve the queue within
``--target_calls`` times an N = 1 call, else the fastest mode).

Streams: ``--requests`` Poisson arrivals at rates of ``--loads`` times the N = 1 capacity
(batch / N = 1 call seconds), the same arrivals and images (seed ``--seed``) for every policy.
Time is simulated: a call advances the clock by the median seconds of a call in its mode,
measured beforehand in ``--rounds`` rounds interleaved over the modes (machines are noisy;
the medians make the replay deterministic), while every call is really executed so that
each request's prediction comes from the superposition it was actually served in.
Latency is completion minus arrival; throughput is requests over the span from the first
arrival to the last completion. An overloaded policy (arrivals faster than its capacity)
shows a p99 latency that grows with the stream length instead of staying near a few calls.

Prints a markdown table, writes ``benchmarks/results/serving.json`` and a plot
(``--plot``, default ``docs/figures/serving.png``; needs the ``plot`` extra).
"""

from __future__ import annotations

import collections
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from mimojax import data as data_lib  # noqa: E402
from mimojax.inference import Predictor, Scheduler, restore  # noqa: E402
from mimojax.inference import scheduler as scheduler_lib  # noqa: E402

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")


def simulate(arrivals: np.ndarray, choose, seconds: dict, batch: int):
  """Replays ``arrivals`` (sorted seconds) through one FIFO server: ``choose(depth)`` names
  the mode of each call, which serves up to ``batch`` queued requests in ``seconds[mode]``.
  Returns (completion times, [(mode, request ids), ...], max queue depth)."""
  done = np.zeros(len(arrivals))
  calls, queue, clock, nxt, deepest = [], collections.deque(), 0.0, 0, 0
  while nxt < len(arrivals) or queue:
    if not queue:
      clock = max(clock, arrivals[nxt])
    while nxt < len(arrivals) and arrivals[nxt] <= clock:
      queue.append(nxt)
      nxt += 1
    deepest = max(deepest, len(queue))
    mode = choose(len(queue))
    ids = [queue.popleft() for _ in range(min(batch, len(queue)))]
    clock += seconds[mode]
    done[ids] = clock
    calls.append((mode, ids))
  return done, calls, deepest


def serve(predictor, calls, images, labels, requested) -> np.ndarray:
  """Whether each request's served prediction is correct (every call really executed)."""
  correct = np.zeros(len(requested), bool)
  for mode, ids in calls:
    picked = requested[ids]
    logits = predictor.predict(images[picked], mode=mode)
    correct[ids] = logits.argmax(-1) == labels[picked]
  return correct


def plot(rows, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
  for policy in dict.fromkeys(r["policy"] for r in rows):
    mine = [r for r in rows if r["policy"] == policy]
    style = dict(marker="o", lw=2.5 if policy == "adaptive" else 1.2, label=policy)
    left.plot([r["rate"] for r in mine], [r["p99_ms"] for r in mine], **style)
    right.plot([r["rate"] for r in mine], [100 * r["accuracy"] for r in mine], **style)
  left.set(xlabel="arrival rate (requests/s)", ylabel="p99 latency (ms)", yscale="log")
  right.set(xlabel="arrival rate (requests/s)", ylabel="accuracy (%)")
  left.legend()
  left.grid(alpha=0.3)
  right.grid(alpha=0.3)
  fig.suptitle("MIMOConv-10-1 (N = 4, dynamic): fixed inputs per pass vs load-adaptive")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=120)
  print(f"wrote {path}")


def main(argv=None):
  p = common.parser(__doc__)
  p.add_argument("--workdir", required=True, help="a dynamic MIMOConv run (see above)")
  p.add_argument("--batch_size", type=int, default=64, help="images per compiled call")
  p.add_argument("--rounds", type=int, default=20, help="timing rounds per mode (median)")
  p.add_argument("--requests", type=int, default=2000, help="requests per stream")
  p.add_argument("--loads", default="0.5,0.9,1.1,1.3,1.7",
                 help="arrival rates as multiples of the N = 1 capacity")
  p.add_argument("--target_calls", type=float, default=3.0,
                 help="adaptive latency target in N = 1 calls")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--plot", default=os.path.join(DOCS, "figures", "serving.png"))
  args = common.parse_args(p, "serving.json", argv=argv)

  predictor = Predictor.load(args.workdir, batch_size=args.batch_size)
  config = restore.load(args.workdir).config
  source = data_lib.load_split(config.data, "test")[0]
  examples = [source[i] for i in range(len(source))]
  images = np.stack([np.asarray(e["inputs"]) for e in examples])
  labels = np.asarray([int(e["label"]) for e in examples])
  per_pass = {name: mode.inputs_per_pass for name, mode in predictor.modes.items()}
  slowest = min(per_pass, key=per_pass.get)
  batch = np.resize(images, (args.batch_size,) + images.shape[1:])
  seconds = scheduler_lib.measure(predictor, batch, args.rounds)
  capacity = {name: args.batch_size / s for name, s in seconds.items()}
  adaptive = Scheduler(seconds, per_pass, args.batch_size,
                       target_seconds=args.target_calls * seconds[slowest])
  policies = {f"fixed N={per_pass[name]}": (lambda depth, name=name: name)
              for name in sorted(per_pass, key=per_pass.get)}
  policies["adaptive"] = adaptive.choose

  rows = []
  for load in (float(x) for x in args.loads.split(",")):
    rate = load * capacity[slowest]
    rng = np.random.default_rng(args.seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, args.requests))
    requested = rng.integers(len(images), size=args.requests)
    for policy, choose in policies.items():
      done, calls, deepest = simulate(arrivals, choose, seconds, args.batch_size)
      latency = done - arrivals
      correct = serve(predictor, calls, images, labels, requested)
      served = collections.Counter()
      for mode, ids in calls:
        served[per_pass[mode]] += len(ids)
      rows.append({
          "policy": policy, "load": load, "rate": rate,
          "throughput": args.requests / (done.max() - arrivals.min()),
          "p50_ms": 1e3 * float(np.percentile(latency, 50)),
          "p99_ms": 1e3 * float(np.percentile(latency, 99)),
          "accuracy": float(correct.mean()), "max_queue": deepest, "calls": len(calls),
          "share_per_pass": {str(n): served[n] / args.requests for n in sorted(served)}})

  print(common.markdown_table(
      ["mode", "s/call (median)", "capacity (images/s)"],
      [[name, f"{seconds[name]:.4f}", f"{capacity[name]:.0f}"] for name in seconds]))
  print()
  print(common.markdown_table(
      ["load x N=1 capacity", "rate (req/s)", "policy", "throughput (req/s)", "p50 ms",
       "p99 ms", "accuracy %", "max queue", "inputs/pass 1/2/4 share"],
      [[f"{r['load']:.1f}", f"{r['rate']:.0f}", r["policy"], f"{r['throughput']:.0f}",
        f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{100 * r['accuracy']:.1f}",
        r["max_queue"], " / ".join(f"{100 * r['share_per_pass'].get(str(n), 0):.0f}"
                                   for n in sorted(set(per_pass.values())))]
       for r in rows]))
  common.write_result(args.out, {
      "workdir": args.workdir, "batch_size": args.batch_size, "rounds": args.rounds,
      "requests": args.requests, "seed": args.seed, "target_calls": args.target_calls,
      "seconds_per_call": seconds, "capacity": capacity, "rows": rows})
  if args.plot:
    plot(rows, args.plot)


if __name__ == "__main__":
  main()
