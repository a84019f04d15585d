"""Annotate one video: decode -> detect -> align -> model -> track -> temporal -> output, streaming.

Three threads work at once, each a batch ahead of the next: the decoder, the detection stage (detector, shot
cuts, tracker) and the caller's thread, which aligns every detection and runs the ensemble on the crops (with
a budget of one thread, detection runs on the caller's thread: `parallel_stages`). The tracker assigns ids
with a lag of a few frames, the per-face temporal filters smooth within each track, and rows leave in frame
order. Only a bounded window of frames is held at any time, so memory stays flat on long videos.
"""

import ctypes
import json
import platform
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from fer_annotate import __version__
from fer_annotate.faces.align import face_transforms, warp_crops
from fer_annotate.faces.cuts import CutConfig
from fer_annotate.faces.detect import CONFIRM_SCORE, Detections, DetectorConfig, FaceDetector, resolve_detector
from fer_annotate.faces.geometry import GeometryConfig, GeometryStage
from fer_annotate.faces.reid import PersonConfig, PersonLinker, load_embedder
from fer_annotate.faces.sparse import FrameFinder, SparseConfig
from fer_annotate.faces.track import Tracker, TrackerConfig
from fer_annotate.media.display import text_name
from fer_annotate.media.video import FrameBatch, Sampling, Video, VideoError
from fer_annotate.models.bundle import InputSpec
from fer_annotate.models.model import ModelStage, crop_template
from fer_annotate.outputs.output import (
    TableSchema,
    TableWriter,
    remove_path,
    sidecar_path,
    source_record,
    write_sidecar,
    writing,
)
from fer_annotate.run.settings import SIDECAR_KEY as SETTINGS_KEY
from fer_annotate.run.settings import content_settings
from fer_annotate.run.threads import DECODE_THREADS

WRITE_EVERY = 256
PREFETCH_BATCHES = 2


@dataclass
class AnnotateConfig:
    """Everything that decides how a video is annotated (recorded in the sidecar).

    `max_frame_bytes` bounds the decoded pixels in flight (the batch being processed, the decode-ahead
    queue and the batch being decoded): large frames get smaller batches, so 4K costs no more than 640x360.
    `parallel_stages`: the detection stage on its own thread (a thread budget of two or more; with one
    core it would only contend with the model for it).
    """

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    sampling: Sampling = field(default_factory=Sampling)
    batch_size: int = 16
    max_frame_bytes: int = 256 << 20
    fmt: str = "csv"
    save_crops: Path | None = None
    device: str = "cpu"
    decode_threads: int = DECODE_THREADS
    parallel_stages: bool = True
    sparse: SparseConfig = field(default_factory=SparseConfig)
    geometry: GeometryConfig | None = None  # None: no geometry stage
    shots: CutConfig = field(default_factory=CutConfig)
    persons: PersonConfig = field(default_factory=PersonConfig)


@dataclass
class RunSummary:
    """What one video run produced."""

    video: str
    output: str
    frames_decoded: int
    frames_sampled: int
    frames_with_face: int
    rows: int
    face_ids: int
    seconds: float
    stage_seconds: dict[str, float]
    frames_detected: int = 0
    shots: dict = field(default_factory=dict)  # shot cuts: how many, at which video frames
    persons: dict = field(default_factory=dict)  # how person_id was formed


@dataclass
class _Frame:
    """A sampled frame waiting for the tracker: its detections and per-detection results."""

    index: int
    time_s: float
    dets: Detections
    results: list[dict]
    crops: torch.Tensor | None
    geometry: list[dict] = field(default_factory=list)  # per detection: pose/blendshape/landmark cells
    image: np.ndarray | None = None  # the RGB frame, kept while persons are being embedded


def _prefetch(it: Iterator, depth: int = 2) -> Iterator:
    """Run an iterator on a background thread (decoding overlaps compute); re-raises its errors here.

    When the consumer stops early (an error downstream), the thread is released and ends, so that it does
    not keep its decoded frames and the video open."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work() -> None:
        try:
            for item in it:
                q.put(item)
                if stop.is_set():
                    return
        except BaseException as exc:  # handed to the consumer
            q.put(exc)
        q.put(done)

    threading.Thread(target=work, daemon=True).start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while True:
            try:
                q.get_nowait()
            except queue.Empty:
                break


def release_free_memory() -> None:
    """Hand freed heap pages back to the system (glibc's malloc_trim; a no-op elsewhere), at most once every
    TRIM_EVERY_S seconds.

    Frames, crops and tensors of varying sizes are allocated on the decode thread and torch's threads and
    freed on others; glibc keeps such freed memory in its per-thread arenas, so without this the resident
    size creeps up over a long video although nothing is kept alive. Trimming after every batch cost a
    tenth of a run in page faults (the next batch's buffers are faulted in again); once a second bounds the
    memory alike."""
    global _last_trim
    now = time.monotonic()
    if _MALLOC_TRIM is not None and now - _last_trim >= TRIM_EVERY_S:
        _MALLOC_TRIM(0)
        _last_trim = now


def _malloc_trim():
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()
TRIM_EVERY_S = 1.0
_last_trim = -TRIM_EVERY_S


def frames_per_batch(batch_size: int, max_frame_bytes: int, width: int, height: int) -> int:
    """Frames per batch: `batch_size`, fewer when frames are so large that the frames in flight
    (PREFETCH_BATCHES queued after each of the decoder and the detection stage, one batch in each of the
    three threads) would exceed `max_frame_bytes`."""
    fit = max_frame_bytes // ((2 * PREFETCH_BATCHES + 3) * max(1, width * height * 3))
    return max(1, min(batch_size, fit))


def _versions() -> dict[str, str]:
    """Versions of the packages that decide the results (from their metadata: no imports)."""
    from importlib.metadata import version

    return {
        "fer_annotate": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "decord": version("decord"),
        "face_alignment": version("face-alignment"),
        "numpy": np.__version__,
        "pandas": version("pandas"),
    }


class Annotator:
    """Holds the detector and the model stage; annotates videos one after another."""

    def __init__(self, config: AnnotateConfig, model: ModelStage | None = None):
        self.config = config
        self.detectors: dict[str, FaceDetector] = {}
        self.detector = self.detector_for(still=False)  # built now, so that missing weights fail before any input
        self.model = model
        # Without a model (--weights none) crops for --save-crops use the default 112 px input spec.
        self.template = model.template if model is not None else crop_template(InputSpec(size=112))
        self.geometry = GeometryStage(config.geometry) if config.geometry is not None else None
        if self.geometry is not None and model is not None:
            model.geometry_columns = False  # the landmarker's measurements take the bs_*/pose_* columns
        self.embedder, self.reid_reason = load_embedder(config.persons)

    def detector_for(self, still: bool) -> FaceDetector:
        """The detector for a video or a still image (they differ with "auto"), built on first use."""
        name = resolve_detector(self.config.detector.name, still)
        if name not in self.detectors:
            self.detectors[name] = FaceDetector(replace(self.config.detector, name=name))
        return self.detectors[name]

    def schema(self) -> TableSchema:
        schema = self.model.schema() if self.model is not None else TableSchema()
        return replace(schema, extra=self.geometry.columns()) if self.geometry is not None else schema

    def run(
        self,
        video_path: Path,
        output: Path,
        on_frames: Callable[[int, int], None] | None = None,
        arguments: dict | None = None,
    ) -> RunSummary:
        """Annotate one video into `output` (+ sidecar); on any error nothing that looks complete is left."""
        started = time.time()
        video = Video(video_path, threads=self.config.decode_threads)
        source = source_record(Path(video_path))
        indices = video.select(self.config.sampling)
        if len(indices) == 0:
            raise VideoError(
                f"{video_path}: no frames in the selected time window "
                f"(the video's frames span {video.times[0]:.3f}-{video.times[-1]:.3f} s)"
            )
        writer = TableWriter(output, self.schema(), self.config.fmt, Path(video_path).stem, video.info.n_frames)
        try:
            stats = self._annotate(video, indices, writer, on_frames)
            sidecar_path(output).unlink(missing_ok=True)  # the old output stays whole until the new one is done
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        seconds = time.time() - started
        summary = RunSummary(
            video=str(video_path),
            output=str(output),
            frames_decoded=video.info.n_frames,
            frames_sampled=len(indices),
            frames_with_face=stats["frames_with_face"],
            rows=writer.rows,
            face_ids=stats["face_ids"],
            seconds=seconds,
            stage_seconds=stats["stages"],
            frames_detected=stats["frames_detected"],
            shots=stats["shots"],
            persons=stats["persons"],
        )
        try:
            meta = self._metadata(video, source, summary, arguments)
            if self.config.fmt != "abaw":
                from fer_annotate.outputs.summary import summarize  # pandas: imported once rows are written
                from fer_annotate.outputs.table import load_table

                meta["summary"] = summarize(load_table(output))
            write_sidecar(output, meta)
        except BaseException:
            remove_path(output)  # a table without its sidecar would be a result nobody can trust
            raise
        return summary

    def settings(self) -> dict:
        """The settings that decide this annotator's tables (the sidecar's `settings`; see run.settings)."""
        sha = self.geometry.sha256 if self.geometry is not None else None
        return content_settings(self.config, self.model, sha)

    def rows(self, path: Path) -> list[dict]:
        """Annotate one input (a photo of a set) and return its rows instead of writing a table."""
        video = Video(path, threads=self.config.decode_threads)
        indices = video.select(self.config.sampling)
        if len(indices) == 0:
            raise VideoError(f"{path}: no frames in the selected time window")
        rows = _Rows()
        self._annotate(video, indices, rows, None)
        return rows.rows

    def _metadata(self, video: Video, source: dict, summary: RunSummary, arguments: dict | None) -> dict:
        cfg = self.config
        return {
            "complete": True,
            "source": source,
            "tool": "fer-annotate",
            "versions": _versions(),
            "arguments": arguments or {},
            "config": json.loads(json.dumps(asdict(cfg), default=str)),
            SETTINGS_KEY: self.settings(),
            "detector": resolve_detector(cfg.detector.name, video.still),
            "device": cfg.device,
            "torch_threads": torch.get_num_threads(),
            "model": self.model.describe() if self.model is not None else None,
            "geometry": self.geometry.describe() if self.geometry is not None else None,
            "shots": summary.shots,
            "persons": summary.persons,
            "columns": self.schema().columns,
            "video": asdict(video.info),
            "frames": {
                "decoded": summary.frames_decoded,
                "sampled": summary.frames_sampled,
                "detected": summary.frames_detected,
                "with_face": summary.frames_with_face,
                "no_face": summary.frames_sampled - summary.frames_with_face,
                "rows": summary.rows,
                "face_ids": summary.face_ids,
            },
            "timing": {
                "seconds": round(summary.seconds, 3),
                "frames_per_second": round(summary.frames_sampled / max(summary.seconds, 1e-9), 2),
                "stages": {k: round(v, 3) for k, v in summary.stage_seconds.items()},
            },
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def _annotate(
        self, video: Video, indices: np.ndarray, writer: TableWriter, on_frames: Callable[[int, int], None] | None
    ) -> dict:
        cfg = self.config
        detector = self.detector_for(video.still)
        track_cfg = cfg.tracker
        if track_cfg.confirm_score is None:  # --detector auto: the score the chosen detector needs
            track_cfg = replace(track_cfg, confirm_score=CONFIRM_SCORE[detector.config.name])
        if video.still or len(indices) < track_cfg.min_hits:  # a still, or fewer sampled frames than a birth
            track_cfg = replace(track_cfg, min_hits=len(indices))  # needs: a face seen in all of them gets its id
        tracker = Tracker(track_cfg)
        stages = dict.fromkeys(("decode", "detect", "align", "model", "track", "write"), 0.0)
        if self.geometry is not None:
            stages["geometry"] = 0.0
        pending: dict[int, _Frame] = {}
        if video.still:  # faces in one frame are never one person: nothing to embed
            linker = PersonLinker(cfg.persons, None, "a still image: each face is its own person")
        else:
            linker = PersonLinker(cfg.persons, self.embedder, self.reid_reason)
        emitter = _Emitter(text_name(Path(video.path).stem), self.model, writer, stages, linker)
        finder = FrameFinder(detector, cfg.sparse, cfg.shots)
        cuts: list[int] = []
        done = 0
        tic = time.perf_counter()
        batch_size = frames_per_batch(cfg.batch_size, cfg.max_frame_bytes, video.info.width, video.info.height)
        detected = _detected(_prefetch(video.batches(indices, batch_size), PREFETCH_BATCHES), finder, tracker, cfg)
        for step in _prefetch(detected, PREFETCH_BATCHES) if cfg.parallel_stages else detected:
            stages["decode"] += time.perf_counter() - tic
            stages["detect"] += step.seconds
            batch, frames, found = step.batch, step.frames, step.found
            cuts += step.cuts
            results, crops = self._faces(frames, found, stages)
            tic = time.perf_counter()
            geometry = self.geometry(batch.frames, found) if self.geometry is not None else [[] for _ in found]
            if self.geometry is not None:
                stages["geometry"] += time.perf_counter() - tic
            tic = time.perf_counter()
            for j, dets in enumerate(found):
                image = batch.frames[j] if linker.embedder is not None else None
                pending[step.first + j] = _Frame(int(batch.indices[j]), float(batch.times[j]), dets, results[j],
                                                 crops[j], geometry[j], image)
            for fpos, ids in step.settled:
                emitter.emit(pending.pop(fpos), ids, self._save_crop)
            stages["track"] += time.perf_counter() - tic
            release_free_memory()
            done += len(batch.indices)
            if on_frames is not None:
                on_frames(done, len(indices))
            tic = time.perf_counter()
        for fpos, ids in tracker.finalize(flush=True):
            emitter.emit(pending.pop(fpos), ids, self._save_crop)
        emitter.close()
        tic = time.perf_counter()
        persons = linker.persons()
        writer.set_person_ids(persons)
        stages["persons"] = linker.seconds + time.perf_counter() - tic
        stages["track"] -= linker.seconds  # embeddings are made while rows are emitted
        shots = {"cut_detection": cfg.shots.cuts, "cuts": len(cuts), "cut_frames": cuts}
        return {"frames_with_face": emitter.frames_with_face, "face_ids": tracker.next_id, "stages": stages,
                "frames_detected": finder.detected, "shots": shots, "persons": linker.describe(persons)}

    def _faces(
        self, frames: torch.Tensor, found: list[Detections], stages: dict[str, float]
    ) -> tuple[list[list[dict]], list[torch.Tensor | None]]:
        """Align every detection of a batch and run the model on the crops, batched."""
        counts = [len(d) for d in found]
        empty: list[list[dict]] = [[{} for _ in range(n)] for n in counts]
        need_crops = self.model is not None or self.config.save_crops is not None
        if not need_crops or sum(counts) == 0:
            return empty, [None] * len(found)
        tic = time.perf_counter()
        frame_idx = np.repeat(np.arange(len(found)), counts)
        boxes = np.concatenate([d.boxes for d in found])
        kps = [d.keypoints for d in found if len(d)]
        keypoints = None if any(k is None for k in kps) else np.concatenate(kps)
        transforms = face_transforms(boxes, keypoints, self.template)
        crops = warp_crops(frames, frame_idx, transforms, self.template.size)
        stages["align"] += time.perf_counter() - tic
        results = empty
        if self.model is not None:
            tic = time.perf_counter()
            rotation = np.degrees(np.arctan2(transforms[:, 1, 0], transforms[:, 0, 0]))
            flat = self.model.predict(crops, rotation)
            stages["model"] += time.perf_counter() - tic
            results, k = [], 0
            for n in counts:
                results.append(flat[k : k + n])
                k += n
        per_frame = list(torch.split(crops, counts)) if self.config.save_crops is not None else [None] * len(found)
        return results, per_frame

    def _save_crop(self, video_stem: str, frame: _Frame, det: int, face_id: int) -> None:
        from PIL import Image  # Pillow comes with torchvision

        folder = Path(self.config.save_crops) / video_stem
        folder.mkdir(parents=True, exist_ok=True)
        pixels = frame.crops[det].permute(1, 2, 0).cpu().numpy()
        target = folder / f"{frame.index:06d}_face{face_id}.png"
        with writing(target):
            try:
                Image.fromarray(pixels).save(target)
            except BaseException:
                target.unlink(missing_ok=True)  # never a truncated crop
                raise


@dataclass
class _Detected:
    """One batch after the detection stage: its faces per frame, the shot cuts in it, the frames whose ids
    the tracker has settled (position, ids), and the seconds the stage spent on it."""

    batch: FrameBatch
    frames: torch.Tensor
    first: int
    found: list[Detections]
    cuts: list[int]
    settled: list[tuple[int, dict[int, int]]]
    seconds: float


def _detected(batches: Iterator, finder: FrameFinder, tracker: Tracker, cfg: AnnotateConfig) -> Iterator[_Detected]:
    """The detection stage: detect (or predict) the faces of each batch and track them.

    It runs on its own thread (`_prefetch`), one batch ahead of the alignment and the model on the
    caller's thread, so that on a machine with two cores both are busy (torch releases the GIL inside its
    kernels). The tracker is touched only here until the stage has ended."""
    for batch in batches:
        tic = time.perf_counter()
        frames = torch.from_numpy(batch.frames)
        if cfg.device != "cpu":
            frames = frames.pin_memory().to(cfg.device, non_blocking=True)
        first = tracker.position + 1
        found = finder(frames, batch.times, tracker)
        cuts = batch.indices[finder.cuts].tolist() if cfg.shots.cuts else []
        settled = tracker.finalize()
        yield _Detected(batch, frames, first, found, cuts, settled, time.perf_counter() - tic)


class _Rows:
    """A writer that keeps the rows (see `Annotator.rows`)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def write(self, rows: list[dict]) -> None:
        self.rows.extend(rows)

    def set_person_ids(self, persons: dict[int, int]) -> None:
        """Fill person_id from face_id, as TableWriter does for a table."""
        for row in self.rows:
            face = row.get("face_id")
            if face is not None:
                row["person_id"] = persons.get(face, face)


class _Emitter:
    """Turns settled frames into rows: per-face temporal filters, then frame order, then the writer."""

    def __init__(self, video: str, model: ModelStage | None, writer: TableWriter, stages: dict[str, float],
                 linker: PersonLinker):
        self.video, self.model, self.writer, self.stages = video, model, writer, stages
        self.linker = linker
        self.frames_with_face = 0
        self.order: dict[int, list] = {}
        self.next_frame: deque[int] = deque()
        self.waiting: dict[int, int] = {}
        self.rows: list[dict] = []
        self.filters: dict[int, object] = {}
        self.last_time: dict[int, float] = {}

    def emit(self, frame: _Frame, ids: dict[int, int], save_crop: Callable | None) -> None:
        base = {"video": self.video, "frame": frame.index, "time_s": round(frame.time_s, 6)}
        if not ids:
            self._ready(frame.index, [{**base, "status": "no_face"}])
            self._stale(frame.time_s)
            return
        self.frames_with_face += 1
        self.order[frame.index] = []
        self.next_frame.append(frame.index)
        self.waiting[frame.index] = len(ids)
        for det, face_id in sorted(ids.items(), key=lambda kv: kv[1]):
            box = frame.dets.boxes[det]
            row = {
                **base,
                "face_id": face_id,
                "status": "ok",
                "score": round(float(frame.dets.scores[det]), 4),
                "x1": round(float(box[0]), 1),
                "y1": round(float(box[1]), 1),
                "x2": round(float(box[2]), 1),
                "y2": round(float(box[3]), 1),
                **(frame.geometry[det] if frame.geometry else {}),
            }
            if frame.crops is not None and save_crop is not None:
                save_crop(self.video, frame, det, face_id)
            self.linker.observe(face_id, frame.index, frame.time_s, frame.image, box)
            self._push(face_id, frame, row, frame.results[det])
        self._stale(frame.time_s)

    def _push(self, face_id: int, frame: _Frame, row: dict, result: dict) -> None:
        if self.model is None:
            self._done(frame.index, row)
            return
        filt = self.filters.get(face_id)
        if filt is None:
            filt = self.filters[face_id] = self.model.new_filter()
        self.last_time[face_id] = frame.time_s
        for index, out in filt.push(frame.index, frame.time_s, (row, result)):
            self._done(index, out)

    def _stale(self, now: float) -> None:
        """Flush the filters of faces not seen for longer than a segment gap (their segment has ended)."""
        if self.model is None:
            return
        for face_id in [f for f, t in self.last_time.items() if now - t > self.model.max_gap_s]:
            for index, out in self.filters.pop(face_id).flush():
                self._done(index, out)
            del self.last_time[face_id]

    def _done(self, index: int, row: dict) -> None:
        self.order[index].append(row)
        self.waiting[index] -= 1
        self._release()

    def _ready(self, index: int, rows: list[dict]) -> None:
        self.order[index] = rows
        self.next_frame.append(index)
        self.waiting[index] = 0
        self._release()

    def _release(self) -> None:
        while self.next_frame and self.waiting[self.next_frame[0]] == 0:
            index = self.next_frame.popleft()
            del self.waiting[index]
            self.rows.extend(sorted(self.order.pop(index), key=lambda r: r.get("face_id", -1)))
        if len(self.rows) >= WRITE_EVERY:
            self._write()

    def _write(self) -> None:
        tic = time.perf_counter()
        self.writer.write(self.rows)
        self.rows = []
        self.stages["write"] += time.perf_counter() - tic

    def close(self) -> None:
        for face_id in list(self.filters):
            for index, out in self.filters.pop(face_id).flush():
                self._done(index, out)
        self._release()
        if self.next_frame:
            raise RuntimeError(f"internal error: {len(self.next_frame)} frames never completed")
        self._write()
