"""Test set-up: 4 forced CPU devices (must happen before the first backend use), fast
compilation (tests check behaviour, not speed) and the session's tfds data dir."""

import jax
import pytest

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_disable_most_optimizations", True)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
  """One tfds data dir for the session: datasets built by one test are read by the others
  (builds are deterministic and cached per builder config)."""
  return str(tmp_path_factory.mktemp("tfds"))
