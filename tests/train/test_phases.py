"""train/phases.py: what each step trains, as a pure function of the step."""

from mimojax.configs.base import base_config
from mimojax.models import Phase
from mimojax.train import config as config_lib
from mimojax.train import phases


def _schedule(total=100, **groups):
  c = base_config()
  c.train.num_steps = total
  for key, value in groups.items():
    group, field = key.split("__")
    c[group][field] = value
  config = config_lib.from_dict(c)
  return config, phases.schedule(config, total)


def test_schedule_counts_are_fractions_of_the_run():
  _, s = _schedule(100, model__attention="favor_s", model__kernel="exp", mimo__m=2,
                   mimo__n=2, mimo__curriculum_fraction=0.25,
                   mimo__curriculum_ramp_fraction=0.5, mimo__exact_kernel_fraction=0.1)
  assert (s.total_steps, s.curriculum_steps, s.ramp_steps, s.exact_steps) == (100, 25, 50, 10)
  assert s.base == Phase()


def test_exact_kernel_then_sub_grid_then_full_grid():
  _, s = _schedule(20, model__attention="favor_s", model__kernel="exp", mimo__m=2, mimo__n=2,
                   mimo__curriculum_fraction=0.5, mimo__exact_kernel_fraction=0.2)
  got = [phases.phase_at(s, i) for i in range(20)]
  assert got == ([Phase(subgrid=True, exact_kernel=True)] * 4 + [Phase(subgrid=True)] * 6
                 + [Phase()] * 10)
  # a compiled call never spans two phases
  assert [phases.run_length(s, i, 8) for i in (0, 2, 4, 9, 10, 15)] == [4, 2, 6, 1, 8, 8]


def test_exact_kernel_without_a_warm_up_runs_on_the_full_grid():
  _, s = _schedule(10, model__attention="favor_s", model__kernel="exp", mimo__m=2, mimo__n=2,
                   mimo__exact_kernel_fraction=0.3)
  assert [phases.phase_at(s, i) for i in range(5)] == (
      [Phase(exact_kernel=True)] * 3 + [Phase()] * 2)


def test_slow_mode_batches_take_the_slow_inputs_per_pass():
  _, s = _schedule(2000, model__name="mimoconv", mimo__n=4, mimo__inputs_per_pass=2,
                   mimo__slow_fraction=0.25, mimo__slow_inputs_per_pass=1)
  got = [phases.phase_at(s, i) for i in range(2000)]
  assert set(got) == {Phase(inputs_per_pass=1), Phase(inputs_per_pass=2)}
  slow = sum(p == Phase(inputs_per_pass=1) for p in got) / 2000
  assert abs(slow - 0.25) < 0.04  # binomial sd about 0.01
  assert got == [phases.phase_at(s, i) for i in range(2000)]  # a resumed run repeats them


def test_eval_phases_name_every_extra_accuracy():
  config, s = _schedule(10, model__attention="favor_s", model__kernel="exp", mimo__m=2,
                        mimo__n=2, mimo__curriculum_fraction=0.5,
                        mimo__exact_kernel_fraction=0.2)
  assert phases.eval_phases(config, s) == {
      "accuracy/subgrid": Phase(subgrid=True),
      "accuracy/exact_kernel": Phase(subgrid=True, exact_kernel=True)}
  config, s = _schedule(10, model__name="mimoconv", mimo__n=4, eval__inputs_per_pass=(1, 2))
  assert phases.eval_phases(config, s) == {
      "accuracy/inputs_per_pass=1": Phase(inputs_per_pass=1),
      "accuracy/inputs_per_pass=2": Phase(inputs_per_pass=2)}
  config, s = _schedule(10)
  assert phases.eval_phases(config, s) == {}


def test_datamux_retrieval_warm_up_then_task_with_auxiliary_retrieval():
  _, s = _schedule(8, model__name="datamux", mimo__n=2, mimo__retrieval_fraction=0.25,
                   mimo__task_weight=0.9, mimo__retrieval_weight=0.1)
  warm, tune = Phase(task_weight=0.0, retrieval_weight=1.0), Phase(task_weight=0.9,
                                                                   retrieval_weight=0.1)
  assert [phases.phase_at(s, i) for i in range(8)] == [warm] * 2 + [tune] * 6
  assert [phases.run_length(s, i, 4) for i in (0, 1, 2)] == [2, 1, 4]
