"""nas-rs: one trial of a search as a Ray task (the entrypoint of one Ray job).

`nas search --executor ray` writes this file into DIR/trials/ray-driver.py and submits, through
the Ray jobs API, one job per trial whose entrypoint is

    PYTHON DIR/trials/ray-driver.py --program NAS --spec DIR/trials/ID/spec.json \
        --out DIR/trials/ID --log DIR/trials/ID/TICKET.log --num-cpus C --num-gpus G

It asks Ray for one task with C CPUs and G GPUs, which runs `NAS eval --spec ... --out ...` on
whichever node Ray picks (with NAS_THREADS=C unless the environment sets it), its output going
to the log file; the job exits with the command's exit code. The result file is written by
`nas eval` itself (atomically); this script only carries the command. The task is not retried
by Ray (max_retries=0): the search counts and retries lost trials itself.
"""

import argparse
import os
import subprocess
import sys

import ray


@ray.remote(max_retries=0)
def run_trial(program, spec, out, log, threads):
    env = dict(os.environ)
    env.setdefault("NAS_THREADS", str(threads))
    with open(log, "wb") as f:
        done = subprocess.run(
            [program, "eval", "--spec", spec, "--out", out],
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return done.returncode, os.uname().nodename


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--program", required=True)
    p.add_argument("--spec", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--num-cpus", type=float, default=1.0)
    p.add_argument("--num-gpus", type=float, default=0.0)
    a = p.parse_args()
    ray.init(log_to_driver=False)
    threads = max(1, int(a.num_cpus))
    task = run_trial.options(num_cpus=a.num_cpus, num_gpus=a.num_gpus)
    rc, node = ray.get(task.remote(a.program, a.spec, a.out, a.log, threads))
    print(f"nas-rs ray driver: `{a.program} eval --spec {a.spec}` exited {rc} on {node}; log {a.log}")
    if rc != 0:
        try:
            with open(a.log, errors="replace") as f:
                sys.stdout.write(f.read()[-4000:])
        except OSError as e:
            print(f"(its log cannot be read here: {e})")
    sys.exit(rc)


if __name__ == "__main__":
    main()
