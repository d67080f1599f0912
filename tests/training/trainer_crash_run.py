"""Run the fixture stage and kill the process abruptly (os._exit) right after step `argv[2]`,
while the async checkpoint save of that step may still be in flight. Used by test_trainer_crash.py."""

import os
import sys

import trainer_runs

from worldscape_jax.training import loop


def main():
    workdir, crash_step = sys.argv[1], int(sys.argv[2])

    def crash(step, state):
        if step == crash_step:
            os._exit(137)  # no cleanup, no waiting for the async save: like SIGKILL

    loop.train(trainer_runs.fixture_config(), workdir, hooks=[(1, crash)])


if __name__ == "__main__":
    main()
