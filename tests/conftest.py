"""Test set-up: 4 forced CPU devices (must happen before the first backend use) and fast
compilation (tests check behaviour, not speed)."""

import jax

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_disable_most_optimizations", True)
