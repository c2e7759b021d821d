"""The run of ``samdesk track``: prompt, plan, propagate, write each frame, resume.

Split from :mod:`samdesk.commands.track` (the arguments). The order of work
makes a killed run resumable at every point: the run's plan is kept in the
project's meta (:func:`samdesk.tracking.save_run`) before the model sees a
frame; a new prompt's mask is stored as a person-made layer (with the prompt,
so a resume prompts the model the same way) before propagation starts; each
propagated frame is one transaction, and the count of frames visited is kept
after each frame; the meta entry is cleared when the run ends.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from samdesk.commands.segment import UsageError
from samdesk.commands.track import (
    frame_number,
    new_prompt,
    refuse_other_args,
    say,
    video_model,
)


@dataclass
class Tally:
    """What a run did: masks written, (frame, track) pairs skipped because a person
    made them, and frames where the object came out empty (nothing written there)."""

    written: int = 0
    skipped: int = 0
    empty: int = 0


def _sequence(args: argparse.Namespace, project: Any) -> None:
    if project.is_sequence:
        return
    if not args.mark_sequence:
        raise UsageError(f"{project.folder} is not marked a frame sequence: make one with "
                         "samdesk import-video, tick File > Frames are a sequence in the "
                         "window, or run again with --mark-sequence")
    project.set_sequence(True)
    say(f"{project.folder}: marked a frame sequence ({len(project.frame_ids())} frames "
        "in name order)")


def _load(spec: Any, checkpoint: Any, device: str) -> Any:
    from samdesk.commands.progress import Steps
    from samdesk.inference.engines.sam2_video import load_video_engine

    with Steps().step(f"loading {spec.name}"):
        return load_video_engine(spec, checkpoint, device)


def _label(project: Any, name: str | None) -> int | None:
    if name is None:
        return None
    if not name.strip():
        raise UsageError("--label is empty: give the object's class name")
    found = project.label_by_name(name.strip())
    return (found or project.add_label(name.strip())).id


def start_run(args: argparse.Namespace, project: Any) -> int:
    from samdesk.tracking import Conditioning, RunState, build_plan, save_run

    _sequence(args, project)
    frame_ids = project.frame_ids()
    if not frame_ids:
        raise UsageError(f"{project.folder}: no frames")
    if args.frame is None:
        raise UsageError("--frame K: say which frame to start from (0 is the first)")
    frame = frame_number(args.frame, project, frame_ids)
    image_id = frame_ids[frame]
    prompted = bool(args.points or args.negative or args.box is not None)
    if prompted and args.layer is not None:
        raise UsageError("--layer starts from a mask already there: leave out "
                         "--points/--negative/--box, or --layer")
    if args.frames is not None and args.frames < 1:
        raise UsageError(f"--frames {args.frames}: give 1 or more")
    for track_id in args.track:
        project.track(track_id)  # an unknown id is one line naming it
    tracks = list(dict.fromkeys([*args.track, *(t.id for t in project.tracks()
                                                 if args.all)]))
    layer = None
    if args.layer is not None:
        layer = next((a for a in project.annotations(image_id) if a.id == args.layer), None)
        if layer is None:
            elsewhere = next((a for a in project.annotations() if a.id == args.layer), None)
            if elsewhere is None:
                raise UsageError(f"--layer {args.layer}: no mask with that id in "
                                 f"{project.folder}")
            raise UsageError(f"--layer {args.layer}: mask {args.layer} is on frame "
                             f"{project.frame_index(elsewhere.image_id)}, not on frame {frame}")
    if not prompted and layer is None and not args.track:
        raise UsageError("give --points, --box or --layer for the object on frame "
                         f"{frame}, or --track ID to propagate a track again from there")
    record = project.ensure_image_info(image_id)
    if record.width is None or record.height is None:
        raise UsageError(f"--frame {args.frame}: {project.image_file(record)} cannot be read")
    points, labels, box = new_prompt(args, record.height, record.width)
    spec, checkpoint = video_model(args)
    engine = _load(spec, checkpoint, args.device)
    label_id = _label(project, args.label)
    target = args.track[0] if args.track else (layer.track_id if layer is not None else None)
    if (prompted or layer is not None) and target is None:
        default = layer.label_id if layer is not None else None
        target = project.add_track(label_id if label_id is not None else default).id
        say(f"new track {target}")
    elif target is not None and label_id is not None:
        project.relabel_track(target, label_id)
    if target is not None and target not in tracks:
        tracks.insert(0, target)
    extra = []
    if layer is not None:
        if layer.track_id != target:
            layer = project.set_layer_track(layer.id, target)
        if not layer.edited:  # chosen as the start: from now on the person's
            project.update_annotation(layer.id, rle=layer.rle, description="Start track")
    elif prompted:
        extra.append(Conditioning(frame, target, points, labels, box))
    plan = build_plan(project, tracks, image_id, args.direction, args.frames, extra)
    state = RunState(list(plan.track_ids), [{"start": image_id, "direction": args.direction,
                                            "frames": args.frames}], spec.name,
                     str(checkpoint) if checkpoint is not None else None, args.device)
    save_run(project, state)
    return finish(project, engine, [plan], state)


def resume(args: argparse.Namespace, project: Any) -> int:
    from samdesk.inference.models import registry
    from samdesk.tracking import clear_run, load_run, resume_plans

    refuse_other_args(args)
    state = load_run(project)
    if state is None:
        print(f"{project.folder}: no interrupted track run to resume")
        return 0
    plans = resume_plans(project, state)
    if not plans:
        clear_run(project)
        print(f"{project.folder}: the interrupted run had nothing left to do")
        return 0
    if args.model is None:
        args.model = state.model
        if args.checkpoint is None and state.checkpoint is not None:
            args.checkpoint = Path(state.checkpoint)
    spec, checkpoint = video_model(args)
    if spec.name != registry.get_spec(state.model).name:
        say(f"resuming with {spec.name}; the run began with {state.model}")
    engine = _load(spec, checkpoint, args.device if args.device != "auto" else state.device)
    state.visited = 0
    state.segments = [{"start": p.frame_ids[p.start], "direction": p.direction,
                       "frames": p.max_frames} for p in plans]
    return finish(project, engine, plans, state)


def finish(project: Any, engine: Any, plans: list[Any], state: Any) -> int:
    """Run ``plans`` one after another, writing every frame; clear the run at the end."""
    from samdesk import masks
    from samdesk.commands.progress import Progress
    from samdesk.inference.tracking import run_plan
    from samdesk.tracking import clear_run, frames_of, prompt_record, save_run

    tally = Tally()
    total = sum(len(p.order()) for p in plans)
    shown = Progress("frame")
    before = 0

    def on_frame(result: Any) -> None:
        layer = project.write_propagated(result.image_id, result.track_id, result.rle,
                                         result.object_score)
        if layer is not None:
            tally.written += 1
        elif masks.is_empty(result.rle):
            tally.empty += 1
        else:  # a locked propagated layer: kept as it is
            tally.skipped += 1

    for plan in plans:
        def on_prompted(item: Any, rle: Any, plan: Any = plan) -> None:
            image_id = plan.frame_ids[item.frame]
            if masks.is_empty(rle):
                say(f"the prompt on frame {item.frame} gave an empty mask; it still "
                    "conditions this run but is not kept")
                return
            made = prompt_record(item.points, item.labels, item.box, engine.model_id, rle)
            mine = project.track_layers(item.track_id).get(image_id)
            if mine is not None and mine.edited:
                project.update_annotation(mine.id, rle=rle, prompts=made,
                                          description="Prompt track")
            else:
                project.add_annotation(image_id, rle, prompts=made, track_id=item.track_id)

        def progress(done: int, _total: int, base: int = before) -> None:
            state.visited = done
            save_run(project, state)
            shown(base + done, total)

        order = plan.order()
        conditioned = plan.conditioned()
        tally.skipped += sum(1 for f in set(order) for t in plan.track_ids
                             if (f, t) in conditioned)
        try:
            run_plan(engine, plan, frames_of(plan), on_frame, progress,
                     on_prompted=on_prompted)
        except KeyboardInterrupt:
            say(f"stopped; the {tally.written} frames written are kept, and samdesk track "
                f"{project.folder} --resume finishes the run")
            raise
        before += len(order)
        state.segments.pop(0)
        state.visited = 0
        save_run(project, state)
    clear_run(project)
    tracks = ", ".join(str(t) for t in state.tracks)
    print(f"{project.folder}: track{'s' if len(state.tracks) > 1 else ''} {tracks}: "
          f"{tally.written} frames written, {tally.skipped} skipped (person-made), "
          f"{tally.empty} without the object")
    return 0
