#!/usr/bin/env python3
"""Times two programs step by step in turn, so that both see the same
moments of a noisy host, and reports the ratio of their step times.

This project's machine is a shared VM: a step's time moves by 30 % from one
minute to the next, so two programs run one after the other (each for its
own 10 or 20 steps) can differ by more than the effect being measured.
Here both run at once, each waiting for its turn: step i of A, then step i
of B (B then A on odd rounds, so neither always goes first). Each round
gives one ratio B / A of two steps taken moments apart; the median of
those ratios is the result.

After each step the driver waits until that program has gone quiet (the
CPU time of its threads and its children's, /proc/PID/task/*/schedstat,
grows by under 0.2 ms in 2 ms), then starts the other's. Why: PyTorch's
OpenMP threads spin for a while after its step (libgomp's default), and
without the wait that spin competes with the next program's step.
Measured 2026-12-07, stream mode (examples/stream_bench against
scripts/bench_stream.py, 40 rounds, no wait): our batch took 17-19 ms
(median per run) right after our own step, 25-27 ms right after
PyTorch's. A fixed pause instead (--gap) lets the cores idle, and the
next step starts cold: two copies of stream_bench against each other gave
34.5-36 ms a batch with 0.1 s pauses, 26-27 ms without. The settle time
of every step is kept in the JSON. Without /proc (not Linux) there is
no such wait; --gap is then the only choice.

Both programs take the handshake of CHARLSTM_LOCKSTEP=1 (set here): before
each step they read a line from stdin, after it they print "step <seconds>".
examples/stacked_step.rs and scripts/bench_layers_pytorch.py do, and
examples/stream_bench.rs (then without its PyTorch side) and
scripts/bench_stream.py. Each must be told to run at least --steps timed
steps after its untimed first one (the first round is left out here).

Usage:
  python3 scripts/lockstep.py [--steps 20] [--gap 0] [--json FILE] \\
      NAME_A 'COMMAND A' NAME_B 'COMMAND B'

Examples (docs/measured.md):
  python3 scripts/lockstep.py --steps 40 \\
      ours './target/release/examples/stacked_step 2 256 40 0' \\
      pytorch '.venv-interop/bin/python scripts/bench_layers_pytorch.py ../shared/corpus/nietzsche.txt 2 256 40 0'
  python3 scripts/lockstep.py --steps 40 \\
      ours './target/release/examples/stream_bench --corpus ../shared/corpus/nietzsche.txt --batches 40' \\
      pytorch '.venv-interop/bin/python scripts/bench_stream.py --corpus ../shared/corpus/nietzsche.txt --batches 40'

Prints a line per round and a summary line; --json also writes the rounds
and the summary (temp file, fsync, rename).
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time


RUNNING = []


def fail(msg):
    # The other program would otherwise wait for its next line, or report
    # its closed stdin after this message.
    for p in RUNNING:
        if p.poll() is None:
            p.kill()
            p.wait()
    sys.exit(f"lockstep.py: {msg}")


def cpu_ns(pid):
    """CPU time so far of every thread of `pid` and of its descendants (a
    `cargo run` wrapper's child does the work), ns; None without /proc."""
    total, seen, todo = 0, False, [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue  # ended meanwhile, or no /proc
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
                seen = True
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except (OSError, ValueError, IndexError):
                pass  # a thread that ended meanwhile; a kernel without children files
    return total if seen else None


def settle(pid, window=0.002, busy_ns=200_000, limit=1.0):
    """Waits until `pid` uses under busy_ns of CPU in a window (at most
    `limit` s); returns the seconds waited."""
    start = time.perf_counter()
    prev = cpu_ns(pid)
    if prev is None:
        return 0.0
    while time.perf_counter() - start < limit:
        time.sleep(window)
        now = cpu_ns(pid)
        if now is None or now - prev < busy_ns:
            break
        prev = now
    return time.perf_counter() - start


class Program:
    def __init__(self, name, command, want):
        self.name, self.want = name, want  # want: --steps, for the message below
        argv = shlex.split(command)
        if not argv:
            fail(f"the command of {name!r} is empty; give the program and its arguments in one quoted string")
        env = dict(os.environ, CHARLSTM_LOCKSTEP="1")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
        except OSError as e:
            fail(f"cannot start {name!r} ({argv[0]}): {e}; check the command's path")
        RUNNING.append(self.proc)
        self.steps = 0

    def step(self):
        """One step: the go line, then its time (seconds)."""
        try:
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # it has exited; the read below says so
        while True:
            line = self.proc.stdout.readline()
            if not line:
                code = self.proc.wait()
                fail(
                    f"{self.name!r} ended (exit {code}) after {self.steps} steps, its untimed first one included "
                    f"(anything it wrote to stderr is above). Give it at least --steps ({self.want}) timed steps, "
                    "and check that it takes CHARLSTM_LOCKSTEP=1"
                )
            if line.startswith("step "):
                break
            # Anything else it prints before a step's line is its own.
            print(f"[{self.name}] {line}", end="", file=sys.stderr)
        try:
            seconds = float(line.split()[1])
        except (IndexError, ValueError):
            fail(f"{self.name!r} printed {line.strip()!r}; want 'step <seconds>'")
        self.steps += 1
        return seconds

    def finish(self):
        """Closes its stdin (it stops at its next wait) and returns the
        summary line it prints last, if any."""
        self.proc.stdin.close()
        rest = self.proc.stdout.read().strip().splitlines()
        code = self.proc.wait()
        if code != 0:
            fail(f"{self.name!r} exited {code}; its stderr is above")
        return rest[-1] if rest else ""


def write_json(path, value):
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".lockstep-")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20, help="timed rounds (after one untimed)")
    ap.add_argument("--gap", type=float, default=0.0, help="seconds of pause after each step (default none)")
    ap.add_argument("--json", help="also write the rounds and summary here")
    ap.add_argument("name_a")
    ap.add_argument("command_a")
    ap.add_argument("name_b")
    ap.add_argument("command_b")
    args = ap.parse_args()
    if args.steps < 1:
        fail(f"--steps {args.steps}: at least 1 timed round is needed")
    # Keys of a round, and of the JSON file's top level.
    reserved = {"round", "first", "ratio", "settle_s", "summary", "rounds"}
    if args.name_a == args.name_b or reserved & {args.name_a, args.name_b}:
        fail(
            f"the names {args.name_a!r} and {args.name_b!r} must differ and not be one of "
            f"{', '.join(sorted(reserved))}: they label the columns"
        )
    if not args.gap >= 0:
        fail(f"--gap {args.gap}: give 0 or more seconds")
    a = Program(args.name_a, args.command_a, args.steps)
    b = Program(args.name_b, args.command_b, args.steps)
    rounds = []
    for i in range(args.steps + 1):
        order = (a, b) if i % 2 == 0 else (b, a)
        took, settled = {}, {}
        for p in order:
            took[p.name] = p.step()
            settled[p.name] = round(settle(p.proc.pid), 4)
            time.sleep(args.gap)
        if i == 0:
            continue  # both size their buffers on the first step
        ta, tb = took[a.name], took[b.name]
        rounds.append({"round": i, "first": order[0].name, a.name: ta, b.name: tb, "ratio": tb / ta, "settle_s": settled})
        print(f"round {i:3} {a.name} {ta:.4f} s  {b.name} {tb:.4f} s  {b.name} / {a.name} {tb / ta:.3f}", flush=True)
    summary_a, summary_b = a.finish(), b.finish()
    ratios = sorted(r["ratio"] for r in rounds)
    # Inclusive: quartiles within the range, whatever the number of rounds.
    q = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else [ratios[0]] * 3
    summary = {"rounds": len(rounds)}
    for name in (a.name, b.name):
        times = [r[name] for r in rounds]
        summary[f"{name}_median_s"] = round(statistics.median(times), 4)
        summary[f"{name}_min_s"] = round(min(times), 4)
        summary[f"{name}_settle_s_median"] = round(statistics.median(r["settle_s"][name] for r in rounds), 4)
    summary |= {
        "ratio_median": round(q[1], 3),
        "ratio_quartiles": [round(q[0], 3), round(q[2], 3)],
        "ratio_range": [round(ratios[0], 3), round(ratios[-1], 3)],
    }
    print(
        f"{b.name} / {a.name} = {summary['ratio_median']:.3f} (median of {len(rounds)} rounds; "
        f"quartiles {summary['ratio_quartiles'][0]:.3f}-{summary['ratio_quartiles'][1]:.3f}, "
        f"range {summary['ratio_range'][0]:.3f}-{summary['ratio_range'][1]:.3f})"
    )
    print(json.dumps(summary))
    if args.json:
        write_json(args.json, {"summary": summary, "rounds": rounds, a.name: summary_a, b.name: summary_b})


if __name__ == "__main__":
    main()
