"""Pathfinder-32 (LRA "Pathfinder", MIMONets Table 2): a seeded numpy generator of our own.

The LRA images come from Linsley et al.'s snake/paddle generator (drewlinsley/pathfinder),
which draws from unseeded global random state and needs OpenCV, SciPy and Pillow. This module
re-implements its algorithm in plain numpy with one ``np.random.Generator`` per image, seeded
by (seed, index), so every image can be regenerated on its own:

* A *snake* is a chain of short *paddles* (dashes). Paddle k lies on the edge
  v_k -> v_{k+1} of a polyline with step ``paddle_length + 2 * margin``, covering the part
  from ``margin`` to ``margin + paddle_length`` along it, so consecutive paddles are about
  2 * margin apart. Vertices sit on a 1/``subpixel`` pixel lattice and directions on
  ``num_directions`` equally spaced angles (the original used integer pixels and degrees).
* Growing a snake: the next direction is drawn with weight
  cos^2(min(continuity * |turn|, pi/2)) among the directions whose paddle is free; a snake
  with no free direction is a dead end, and the attempt starts over (for the hard settings
  about one target pair in four grows to full length).
* Free: every placed paddle occupies its *halo*, the pixels within thickness/2 + margin of
  its whole edge (gaps included, so no other snake can pass between two of its paddles); a
  new paddle's *body*, the pixels within thickness/2 + 1/2 of its dash and the gap after it,
  must miss every halo except that of the same snake's previous paddle and every pixel of the
  ``padding`` border. Snakes therefore never touch or cross each other or themselves.
* An image: label = uniform {0, 1}. Two target snakes of ``contour_length`` paddles start
  ``seed_distance`` apart near the centre (the first one's seed vertex is at least
  2 * seed_distance from every border when the window allows) and grow in alternation.
  Then ``num_distractors`` snakes of ``distractor_length`` paddles start at uniform
  positions (one that fails ``max_distractor_trials`` times is left out, as in the
  original). Two disc
  markers of radius ``marker_radius`` go on the first paddle's tail of a target snake chosen
  at random and on the last paddle's head of the same snake (label 1) or of the other target
  snake (label 0), so both labels put markers at statistically identical places.
* Rendering: paddles are anti-aliased dashes of width ``paddle_thickness`` (coverage on a
  ``supersample``-times finer grid, box-filtered), times ``contrast`` (LRA's snake contrast
  2 x paddle contrast 0.75), clipped at 1; markers are anti-aliased discs of value 1; the
  image is the pixel-wise max as uint8 round(255 * value): background 0, so the MIMOFormer
  code's "id 0 = padding" masks it.

``lra_params(contour_length)`` gives LRA's pathfinder32 settings (contour length 14 = "hard",
the benchmark's; 9 = "intermediate", 6 = "easy"): 32 x 32 window, padding 1, paddle length 2,
thickness 0.5, margin 1, continuity 1, marker radius 1.5, seed distance 7, distractor length
contour_length // 3 and 20 // distractor_length distractors, no single-paddle clutter (the
LRA wrapper's setting). It is the same task with the same parameters, not the released
images: accuracies are comparable in difficulty, not numerically with LRA's.
"""
import concurrent.futures
import dataclasses
import functools
import math
import multiprocessing

import numpy as np

NUM_CLASSES = 2


@dataclasses.dataclass(frozen=True)
class Params:
  """Generator settings (lengths in pixels); see the module doc."""
  size: int = 32
  padding: int = 1
  paddle_length: float = 2.0
  paddle_thickness: float = 0.5
  margin: float = 1.0
  continuity: float = 1.0
  contour_length: int = 14
  distractor_length: int = 4
  num_distractors: int = 5
  seed_distance: float = 7.0
  marker_radius: float = 1.5
  contrast: float = 1.5
  num_directions: int = 64
  subpixel: int = 4
  supersample: int = 4
  max_seed_trials: int = 50
  max_pair_trials: int = 1000
  max_distractor_trials: int = 10


def lra_params(contour_length: int = 14) -> Params:
  """LRA pathfinder32 settings for a contour length (14 hard, 9 intermediate, 6 easy)."""
  if contour_length < 3:
    raise ValueError(f"contour_length={contour_length}; must be >= 3")
  distractor_length = contour_length // 3
  return Params(contour_length=contour_length, distractor_length=distractor_length,
                num_distractors=20 // distractor_length)


def check_params(p: Params) -> None:
  """One-line ValueError for settings the generator cannot honour."""
  if p.size < 8 or p.padding < 0 or 2 * p.padding >= p.size:
    raise ValueError(f"size={p.size}, padding={p.padding}; need size >= 8 and "
                     "0 <= 2 * padding < size")
  for field in ("paddle_length", "paddle_thickness", "continuity", "marker_radius",
                "contrast"):
    if getattr(p, field) <= 0:
      raise ValueError(f"{field}={getattr(p, field)}; must be > 0")
  if p.margin < 0 or p.seed_distance < 0:
    raise ValueError(f"margin={p.margin}, seed_distance={p.seed_distance}; must be >= 0")
  if p.contour_length < 1 or p.distractor_length < 1 or p.num_distractors < 0:
    raise ValueError(f"contour_length={p.contour_length}, distractor_length="
                     f"{p.distractor_length}, num_distractors={p.num_distractors}; need "
                     ">= 1, >= 1 and >= 0")
  if p.num_directions < 4 or p.subpixel < 1 or p.supersample < 1:
    raise ValueError(f"num_directions={p.num_directions}, subpixel={p.subpixel}, "
                     f"supersample={p.supersample}; need >= 4, >= 1 and >= 1")


@dataclasses.dataclass
class Scene:
  """What one image is drawn from. Per snake (targets first): ``vertices`` (k, 2) int, the
  (y, x) lattice point, in 1/subpixel pixels, each paddle's edge leaves from, and
  ``directions`` (k,) int, its direction index (angle 2 pi d / num_directions, y down);
  ``markers``: the two marker centres (y, x) in pixels; ``label``."""
  vertices: list
  directions: list
  markers: tuple
  label: int


def paddle_ends(vertices: np.ndarray, directions: np.ndarray, p: Params) -> np.ndarray:
  """(k, 2, 2) (y, x) end points of the paddles on the edges leaving ``vertices``."""
  angle = 2 * np.pi * np.asarray(directions) / p.num_directions
  unit = np.stack([np.sin(angle), np.cos(angle)], -1)
  start = np.asarray(vertices) / p.subpixel + p.margin * unit
  return np.stack([start, start + p.paddle_length * unit], axis=1)


def point_segment_distance(z, a, b):
  """Distance from points z to segments a -> b, all complex x + iy (broadcast)."""
  ab = b - a
  t = ((z - a) * np.conj(ab)).real / np.maximum(ab.real ** 2 + ab.imag ** 2, 1e-12)
  return np.abs(z - a - np.clip(t, 0.0, 1.0) * ab)


class _Tables:
  """Everything that depends only on the settings: the direction lattice, turn weights, and
  per (sub-pixel vertex position, direction) on a (width x width) window whose pixel
  (reach, reach) holds the vertex: the paddle's *body* (pixels within thickness/2 + 1/2 of
  the dash and the gap after it), its *halo* (pixels within thickness/2 + margin of the whole
  edge, gaps included, so no other snake can pass between two paddles), that halo seen from
  the next vertex's window (``previous``), and its anti-aliased coverage."""

  def __init__(self, p: Params):
    k, sp = p.num_directions, p.subpixel
    self.units = np.exp(2j * np.pi * np.arange(k) / k)
    turn = np.abs(np.angle(self.units[None, :] / self.units[:, None]))
    self.turn_weight = np.cos(np.minimum(p.continuity * turn, np.pi / 2)) ** 2
    step = sp * (p.paddle_length + 2 * p.margin) * self.units
    self.step = np.stack([np.rint(step.imag), np.rint(step.real)], -1).astype(int)
    self.body_radius = p.paddle_thickness / 2 + 0.5
    self.halo_radius = p.paddle_thickness / 2 + p.margin
    self.reach = int(math.ceil(p.paddle_length + 2 * p.margin + self.halo_radius)) + 1
    self.width = 2 * self.reach + 2
    offsets = np.arange(self.width) - self.reach
    pixels = offsets[None, :] + 1j * offsets[:, None]
    s = p.supersample
    fine_offsets = np.arange(self.width * s) / s + (0.5 / s - 0.5) - self.reach
    fine = fine_offsets[None, :] + 1j * fine_offsets[:, None]
    shape = (sp * sp, k, self.width, self.width)
    body, halo, cover = np.zeros(shape, bool), np.zeros(shape, bool), np.zeros(shape)
    for q in range(sp * sp):
      vertex = complex(q % sp, q // sp) / sp
      u = self.units[:, None, None]
      a, b, edge_end = vertex + p.margin * u, vertex + (p.margin + p.paddle_length) * u, (
          vertex + (p.paddle_length + 2 * p.margin) * u)
      body[q] = point_segment_distance(pixels[None], a, edge_end) <= self.body_radius
      halo[q] = point_segment_distance(pixels[None], vertex, edge_end) <= self.halo_radius
      fine_dist = point_segment_distance(fine[None], a, b)
      fine_cover = np.clip((p.paddle_thickness / 2 - fine_dist) * s + 0.5, 0.0, 1.0)
      cover[q] = fine_cover.reshape(k, self.width, s, self.width, s).mean(axis=(2, 4))
    self.body = body.reshape(sp * sp, k, -1).astype(np.float32)
    self.halo = halo.astype(np.int32)
    self.cover = cover
    self.previous = np.zeros_like(self.halo)
    w = self.width
    for q in range(sp * sp):
      for j in range(k):
        dy, dx = (q // sp + self.step[j, 0]) // sp, (q % sp + self.step[j, 1]) // sp
        self.previous[q, j, max(0, -dy):w - max(0, dy), max(0, -dx):w - max(0, dx)] = (
            self.halo[q, j, max(0, dy):w - max(0, -dy), max(0, dx):w - max(0, -dx)])


@functools.lru_cache(maxsize=8)
def _tables(p: Params) -> _Tables:
  return _Tables(p)


class _Canvas:
  """Occupancy counts (how many paddle halos cover each pixel; pixels outside the padded
  window are permanently occupied) on a grid with a border of ``reach`` + 2 pixels."""

  def __init__(self, p: Params, t: _Tables):
    self.p, self.t = p, t
    self.border = t.reach + 2
    n = p.size + 2 * self.border
    self.occ = np.full((n, n), 1 << 20, np.int32)
    inner = slice(self.border + p.padding, self.border + p.size - p.padding)
    self.occ[inner, inner] = 0

  def window(self, vertex) -> tuple[slice, slice, int]:
    """Grid window around a lattice vertex (y, x) and its sub-pixel index."""
    sp, r = self.p.subpixel, self.t.reach
    (y, qy), (x, qx) = divmod(vertex[0], sp), divmod(vertex[1], sp)
    y0, x0 = y + self.border - r, x + self.border - r
    return (slice(y0, y0 + self.t.width), slice(x0, x0 + self.t.width), qy * sp + qx)

  def place(self, vertex, direction: int, sign: int) -> None:
    """Adds (+1) or removes (-1) the halo of the paddle leaving ``vertex``."""
    rows, cols, q = self.window(vertex)
    self.occ[rows, cols] += sign * self.t.halo[q, direction]

  def free(self, vertex, exempt=0) -> np.ndarray:
    """(num_directions,) whether a paddle leaving ``vertex`` in each direction misses every
    pixel occupied by more halos than ``exempt`` (window-shaped counts) holds."""
    rows, cols, q = self.window(vertex)
    occupied = (self.occ[rows, cols] > exempt).astype(np.float32).ravel()
    return self.t.body[q] @ occupied == 0


class _Snake:
  """A chain of paddles on the canvas: lattice vertices (y, x) in 1/subpixel units (one
  more than paddles: the last is where the next paddle would leave from) and directions."""

  def __init__(self, canvas: _Canvas, vertex, direction: int):
    self.canvas = canvas
    self.vertices, self.directions = [tuple(vertex)], []
    self._add(direction)

  def _add(self, direction: int) -> None:
    vertex = self.vertices[-1]
    self.canvas.place(vertex, direction, +1)
    self.directions.append(direction)
    dy, dx = self.canvas.t.step[direction]
    self.vertices.append((vertex[0] + dy, vertex[1] + dx))

  def __len__(self) -> int:
    return len(self.directions)

  def extend(self, rng: np.random.Generator) -> bool:
    """Adds one paddle, direction drawn with the continuity weights of the turn among the
    directions whose paddle is free (own previous paddle exempt); False at a dead end."""
    canvas, last = self.canvas, self.directions[-1]
    sp = canvas.p.subpixel
    before = self.vertices[-2]
    exempt = canvas.t.previous[(before[0] % sp) * sp + before[1] % sp, last]
    weight = canvas.t.turn_weight[last] * canvas.free(self.vertices[-1], exempt)
    total = weight.sum()
    if total <= 1e-9:
      return False
    choice = int(np.searchsorted(np.cumsum(weight), rng.random() * total, side="right"))
    self._add(min(choice, len(weight) - 1))
    return True

  def remove(self) -> None:
    """Takes all its paddles off the canvas."""
    for vertex, direction in zip(self.vertices, self.directions):
      self.canvas.place(vertex, direction, -1)

  def ends(self) -> np.ndarray:
    """(k, 2, 2) paddle ends (y, x) in pixels."""
    return paddle_ends(self.vertices[:-1], self.directions, self.canvas.p)


def _seed(canvas: _Canvas, rng: np.random.Generator, lo: float, hi: float, tail=None):
  """A one-paddle snake with a uniform direction, leaving a vertex uniform in [lo, hi]^2
  or (``tail`` given, (y, x)) whose paddle starts ``seed_distance`` from ``tail``; None if
  ``max_seed_trials`` draws all collide."""
  p, sp = canvas.p, canvas.p.subpixel
  for _ in range(p.max_seed_trials):
    direction = int(rng.integers(p.num_directions))
    if tail is None:
      vertex = tuple(int(v) for v in rng.integers(round(lo * sp), round(hi * sp) + 1, size=2))
    else:
      angle = rng.uniform(-np.pi, np.pi)
      unit = canvas.t.units[direction]
      start = (tail[0] + p.seed_distance * np.sin(angle) - p.margin * unit.imag,
               tail[1] + p.seed_distance * np.cos(angle) - p.margin * unit.real)
      vertex = (int(round(start[0] * sp)), int(round(start[1] * sp)))
    if canvas.free(vertex)[direction]:
      return _Snake(canvas, vertex, direction)
  return None


def _grow(snakes: list, rng: np.random.Generator, length: int) -> bool:
  """Extends ``snakes`` in turn to ``length`` paddles each; False at the first dead end."""
  for _ in range(length - 1):
    for snake in snakes:
      if not snake.extend(rng):
        return False
  return True


def _targets(rng: np.random.Generator, p: Params, t: _Tables):
  """The canvas and the two target snakes (module doc), or None when this attempt fails."""
  canvas = _Canvas(p, t)
  lo, hi = 2 * p.seed_distance, p.size - 1 - 2 * p.seed_distance
  if lo > hi:
    lo, hi = p.padding, p.size - 1 - p.padding
  first = _seed(canvas, rng, lo, hi)
  if first is None:
    return None
  second = _seed(canvas, rng, lo, hi, tail=first.ends()[0, 0])
  if second is None or not _grow([first, second], rng, p.contour_length):
    return None
  return canvas, [first, second]


def _distractor(canvas: _Canvas, rng: np.random.Generator):
  """One distractor snake, or None after ``max_distractor_trials`` failed attempts (whose
  paddles are removed again)."""
  p = canvas.p
  for _ in range(p.max_distractor_trials):
    snake = _seed(canvas, rng, p.padding, p.size - 1 - p.padding)
    if snake is None:
      return None
    if _grow([snake], rng, p.distractor_length):
      return snake
    snake.remove()
  return None


def sample_scene(rng: np.random.Generator, p: Params) -> Scene:
  """Label, snakes and markers of one image (module doc)."""
  t = _tables(p)
  label = int(rng.integers(NUM_CLASSES))
  for _ in range(p.max_pair_trials):
    found = _targets(rng, p, t)
    if found is not None:
      break
  else:
    raise ValueError(f"could not place two snakes of contour_length={p.contour_length} in a "
                     f"{p.size}x{p.size} window in {p.max_pair_trials} tries")
  canvas, snakes = found
  for _ in range(p.num_distractors):
    snake = _distractor(canvas, rng)
    if snake is not None:
      snakes.append(snake)
  first = int(rng.integers(2))
  last = first if label == 1 else 1 - first
  markers = (snakes[first].ends()[0, 0], snakes[last].ends()[-1, 1])
  return Scene(vertices=[np.array(s.vertices[:-1]) for s in snakes],
               directions=[np.array(s.directions) for s in snakes], markers=markers,
               label=label)


def render(scene: Scene, p: Params) -> np.ndarray:
  """uint8 (size, size) image of a scene: max of the paddles' anti-aliased coverage times
  ``contrast`` (clipped at 1) and the markers' disc coverage, times 255, rounded."""
  t = _tables(p)
  canvas = _Canvas(p, t)
  image = np.zeros(canvas.occ.shape)
  for vertices, directions in zip(scene.vertices, scene.directions):
    for vertex, direction in zip(vertices, directions):
      rows, cols, q = canvas.window(vertex)
      image[rows, cols] = np.maximum(image[rows, cols], t.cover[q, direction])
  inner = slice(canvas.border, canvas.border + p.size)
  paddles = np.minimum(p.contrast * image[inner, inner], 1.0)
  s = p.supersample
  fine = (np.arange(p.size * s) + 0.5) / s - 0.5
  marks = np.zeros((p.size * s,) * 2)
  for y, x in scene.markers:
    dist = np.hypot(fine[:, None] - y, fine[None, :] - x)
    marks = np.maximum(marks, np.clip((p.marker_radius - dist) * s + 0.5, 0.0, 1.0))
  marks = marks.reshape(p.size, s, p.size, s).mean(axis=(1, 3))
  return np.rint(255 * np.maximum(paddles, marks)).astype(np.uint8)


def generate_one(seed: int, index: int, p: Params) -> tuple[np.ndarray, int]:
  """(uint8 (size, size) image, label) of image ``index`` of the stream ``seed``."""
  scene = sample_scene(np.random.default_rng((seed, index)), p)
  return render(scene, p), scene.label


def generate(num_examples: int, p: Params, seed: int, start: int = 0, progress=None,
             workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """Images (n, size, size) uint8 and labels (n,) int32 for indices start .. start + n - 1.

  ``workers`` > 1 splits the indices into chunks generated by that many spawned processes
  (the result does not depend on it). ``progress`` (e.g. tqdm) gets ``update(k)`` as images
  are done.
  """
  check_params(p)
  if num_examples < 0 or start < 0 or seed < 0 or workers < 1:
    raise ValueError(f"num_examples={num_examples}, start={start}, seed={seed}, workers="
                     f"{workers}; need >= 0, >= 0, >= 0 and >= 1")
  images = np.empty((num_examples, p.size, p.size), np.uint8)
  labels = np.empty((num_examples,), np.int32)
  if workers == 1:
    for i in range(num_examples):
      images[i], labels[i] = generate_one(seed, start + i, p)
      if progress is not None:
        progress.update(1)
    return images, labels
  chunk = max(1, min(500, -(-num_examples // workers)))
  offsets = range(0, num_examples, chunk)
  jobs = [(min(chunk, num_examples - i), p, seed, start + i) for i in offsets]
  context = multiprocessing.get_context("spawn")  # safe with a multithreaded parent (JAX)
  with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
    for i, (chunk_images, chunk_labels) in zip(offsets, pool.map(_generate_chunk, jobs)):
      images[i:i + len(chunk_labels)], labels[i:i + len(chunk_labels)] = (chunk_images,
                                                                           chunk_labels)
      if progress is not None:
        progress.update(len(chunk_labels))
  return images, labels


def _generate_chunk(job) -> tuple[np.ndarray, np.ndarray]:
  num_examples, p, seed, start = job
  return generate(num_examples, p, seed, start)
