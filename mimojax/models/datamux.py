"""DataMUX (Murahari et al., 2022): N inputs multiplexed into one row of a Transformer.

Placeholder constants first; the model follows.
"""

# mimo.mux values each DataMUX model accepts (Sec. 3.1, App. A.10-A.11).
MUXES = {
    "datamux": ("hadamard", "binary", "ortho", "low_rank"),
    "datamux_mlp": ("hadamard", "binary", "ortho", "low_rank"),
    "datamux_cnn": ("ortho", "low_rank", "kernel", "nonlinear"),
}
DEMUXES = ("index", "mlp")
NORM_POSITIONS = ("pre", "post")


def prefix_length(demux: str, n: int) -> int:
  """Tokens the demultiplexer adds in front of each instance: N index tokens and the summary
  token (index), or one CLS token (mlp)."""
  return n + 1 if demux == "index" else 1
