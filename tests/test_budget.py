"""--max-minutes: the run's length and its LR schedule are fitted to a wall-clock budget."""

import json
from dataclasses import replace

from conftest import write_labelled_csv
from tinylm.config import PRESETS, FinetuneConfig, PretrainConfig, RunOptions
from tinylm.finetune import finetune
from tinylm.pretrain import BUDGET_LIMIT, pretrain
from tinylm.train import Budget


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_pretraining_fills_the_budget_and_decays_the_lr_to_its_end(trained, tmp_path):
    # every step's LR is logged: a busy machine may fit only a few steps in the budget, and the test must still see
    # the warm-up and the decay
    cfg = PretrainConfig.of(max_steps=None, max_minutes=0.05, batch_size=8, seq_len=32, lr=2e-3, log_every=1)
    summary = pretrain([trained / "train.csv"], trained / "tokenizer", tmp_path / "base", replace(PRESETS["tiny"].model),
                       cfg, RunOptions(quiet=True))
    assert 0 < summary["steps"] < BUDGET_LIMIT  # the budget ended it, not the step limit
    assert summary["elapsed_s"] > 3.0 * 0.5  # refitted every 10 steps: it ends near the budget's end, not early
    lrs = [r["lr"] for r in records(tmp_path / "base") if "lr" in r]
    assert max(lrs) > 1e-3 and lrs[-1] < 0.1 * max(lrs)  # warmed up, then decayed to (near) zero at the budget


def test_a_step_limit_still_bounds_a_budget(trained, tmp_path):
    cfg = PretrainConfig.of(max_steps=12, max_minutes=10, batch_size=8, seq_len=32)
    summary = pretrain([trained / "train.csv"], trained / "tokenizer", tmp_path / "base", replace(PRESETS["tiny"].model),
                       cfg, RunOptions(quiet=True))
    assert summary["steps"] == 12


def test_finetuning_on_a_budget_ends_on_an_epoch_boundary(trained, tmp_path):
    data = write_labelled_csv(tmp_path / "d.csv", n=300)
    cfg = FinetuneConfig.of(epochs=500, max_minutes=0.03, batch_size=16, seq_len=32)
    summary = finetune(data, trained / "base", tmp_path / "clf", cfg, run=RunOptions(quiet=True))
    steps_per_epoch = -(-270 // 16)  # 10% held out for validation
    assert summary["steps"] < 500 * steps_per_epoch
    # It ends on the epoch boundary the pace predicts; only if the pace slows down (a busy machine) does the budget
    # cut the last epoch short. Every epoch is validated either way, a cut one too.
    assert summary["steps"] % steps_per_epoch == 0 or summary["elapsed_s"] >= 0.03 * 60
    epochs = [r["epoch"] for r in records(tmp_path / "clf") if "epoch" in r]
    assert epochs == list(range(1, -(-summary["steps"] // steps_per_epoch) + 1)) and epochs


def fitted_length(step: int, elapsed_s: float, seconds_per_step: float, budget_s: float = 60.0) -> int:
    """The length Budget.fit gives a fine-tuning run of 17-step epochs, at `step` after `elapsed_s` seconds."""
    return Budget(budget_s / 60, limit=500 * 17, steps_per_epoch=17).fit(step, elapsed_s, seconds_per_step)


def test_a_budget_ends_on_the_last_epoch_boundary_that_fits_and_cuts_an_epoch_only_at_its_end():
    assert fitted_length(step=5, elapsed_s=5.0, seconds_per_step=1.0) == 51  # 5 + 55 steps fit: 3 whole epochs
    assert fitted_length(step=5, elapsed_s=5.0, seconds_per_step=0.001) == 500 * 17  # the epoch limit
    assert fitted_length(step=3, elapsed_s=3.0, seconds_per_step=5.0) == 14  # not one epoch fits: ends inside it
    assert fitted_length(step=51, elapsed_s=50.0, seconds_per_step=1.0) == 51  # the next epoch does not fit
    # The pace slowed inside epoch 5 (steps 69-85): it runs on, and the budget's end cuts it (the CI failure of
    # 2026-11-27 stopped it at once, at step 81 with 0.08 s of a 1.8 s budget left).
    assert fitted_length(step=81, elapsed_s=59.0, seconds_per_step=0.5) == 85
    assert fitted_length(step=81, elapsed_s=60.0, seconds_per_step=0.5) == 81  # the budget is spent: it ends now
    assert fitted_length(step=81, elapsed_s=61.0, seconds_per_step=0.5) == 81


def test_a_budget_shorter_than_one_epoch_ends_inside_it_and_keeps_that_model(trained, tmp_path):
    data = write_labelled_csv(tmp_path / "d.csv", n=6000)
    steps_per_epoch = -(-5400 // 16)
    cfg = FinetuneConfig.of(epochs=3, max_minutes=0.02, batch_size=16, seq_len=32)
    summary = finetune(data, trained / "base", tmp_path / "clf", cfg, run=RunOptions(quiet=True))
    assert 0 < summary["steps"] < steps_per_epoch  # ~1.2 s of a ~10 s epoch
    validated = [r for r in records(tmp_path / "clf") if "epoch" in r]
    assert len(validated) == 1 and validated[0]["epoch"] == 1 and validated[0]["step"] == summary["steps"]
    assert abs(validated[0]["epoch_fraction"] - summary["steps"] / steps_per_epoch) < 1e-9
    assert summary["best"]["step"] == summary["steps"] and (tmp_path / "clf" / "model.safetensors").is_file()


def simulated_run(budget: Budget, seconds_per_step, limit: int) -> tuple[int, float]:
    """Steps and seconds of a run whose k-th step takes seconds_per_step(k): the loop's use of Budget.length,
    with a simulated clock instead of the machine's."""
    from tinylm.train import LoopState

    state, now = LoopState(max_steps=limit), 0.0
    while state.step < state.max_steps:
        state.step += 1
        now += seconds_per_step(state.step)
        state.elapsed_s = now
        state.max_steps = budget.length(state, now)
    return state.step, now


def test_a_budget_ends_the_run_at_its_end_whatever_the_pace():
    steady = simulated_run(Budget(1.0, limit=10**9), lambda k: 0.1, 10**9)
    assert steady[0] in range(599, 602) and 59.8 <= steady[1] <= 60.2
    # A busy machine: the first steps are slow, then the pace triples; the run is refitted and still fills it.
    busy = simulated_run(Budget(1.0, limit=10**9), lambda k: 0.3 if k < 50 else 0.1, 10**9)
    assert 59.0 <= busy[1] <= 61.0
    # The pace slows down: the run ends once the budget is spent, one step past at most.
    slowing = simulated_run(Budget(1.0, limit=10**9), lambda k: 0.1 if k < 300 else 1.0, 10**9)
    assert 60.0 <= slowing[1] <= 61.0
    # The step limit still bounds it, and fine-tuning ends on an epoch boundary of 17 steps.
    assert simulated_run(Budget(1.0, limit=100), lambda k: 0.1, 100)[0] == 100
    epochs = simulated_run(Budget(1.0, limit=10**6, steps_per_epoch=17), lambda k: 0.1, 10**6)
    assert epochs[0] % 17 == 0 and 60.0 - 17 * 0.1 <= epochs[1] <= 60.0
