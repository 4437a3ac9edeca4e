"""The `slots` command line: parse, reject bad combinations, call one operation, render.

The one error boundary is :func:`main`: every ``SlotsError`` becomes a message on stderr (or, with
``-o json``, a JSON document on stdout) and the contract's exit code; no traceback for anything
expected. Heavy modules (the Kubernetes client, PyYAML) are imported inside the commands so that
``slots --help`` starts fast.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn, cast

import click

from gx10slots import __version__
from gx10slots.app import App, GlobalOptions, OutputFormat
from gx10slots.errors import Explained, Interrupted, SlotsError, UsageError

if TYPE_CHECKING:
    from gx10slots.flip.result import FlipResult
    from gx10slots.guard.result import GuardResult
    from gx10slots.ops.status import StatusResult


class _Duration(click.ParamType):
    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, int | float):
            return float(value)
        from gx10slots.durations import parse_duration

        try:
            seconds = parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if seconds <= 0:
            self.fail(f"{value!r} is not a positive duration", param, ctx)
        return seconds


DURATION = _Duration()
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _app(ctx: click.Context) -> App:
    app = ctx.find_object(App)
    assert app is not None, "the group callback always sets the App"
    return app


def _namespace(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not _NAMESPACE.match(value):
        raise click.BadParameter(
            f"{value!r} is not a namespace name (lowercase letters, digits, '-')",
            ctx=ctx,
            param_hint="'-n' / '--namespace'",
        )
    return value


OUTPUTS = ("table", "wide", "json", "yaml")
# The global options by parameter name. Given after the subcommand they override the ones given
# before it (kubectl's convention: `slots status -o json` is `slots -o json status`).
_GLOBAL_NAMES = ("config_path", "kubeconfig", "context", "namespace", "output", "verbose", "quiet")


def _global_options(*, late: bool) -> list[click.Option]:
    """The global options: on the group (``late=False``, with defaults and environment variables),
    or accepted after a subcommand (``late=True``: no default, so only what is typed there
    overrides; hidden from each command's help, which points at `slots --help` instead)."""

    def env(name: str) -> str | None:
        return None if late else name

    return [
        click.Option(
            ["--config", "config_path"],
            envvar=env("SLOTS_CONFIG"),
            default=None if late else "slots.yaml",
            show_default=not late,
            metavar="PATH",
            hidden=late,
            help="Config file [env SLOTS_CONFIG].",
        ),
        click.Option(
            ["--kubeconfig"],
            envvar=env("KUBECONFIG"),
            metavar="PATH",
            hidden=late,
            help="Kubeconfig, as kubectl [env KUBECONFIG]; in a pod without it, the service "
            "account.",
        ),
        click.Option(
            ["--context"],
            envvar=env("SLOTS_CONTEXT"),
            metavar="NAME",
            hidden=late,
            help="Kubeconfig context [env SLOTS_CONTEXT].",
        ),
        click.Option(
            ["-n", "--namespace"],
            envvar=env("SLOTS_NAMESPACE"),
            metavar="NS",
            hidden=late,
            callback=_namespace,
            help="Override the config's namespace [env SLOTS_NAMESPACE].",
        ),
        click.Option(
            ["-o", "--output"],
            envvar=env("SLOTS_OUTPUT"),
            type=click.Choice(OUTPUTS, case_sensitive=False),
            default=None if late else "table",
            show_default=not late,
            hidden=late,
            help="table; wide (every column); json or yaml: one document on stdout "
            "[env SLOTS_OUTPUT].",
        ),
        click.Option(
            ["-v", "--verbose"],
            count=True,
            hidden=late,
            help="More progress on stderr (repeatable).",
        ),
        click.Option(["-q", "--quiet"], count=True, hidden=late, help="Less progress on stderr."),
    ]


_LATE_EPILOG = (
    "Global options (--config, --kubeconfig, --context, -n, -o, -v, -q: see `slots --help`) "
    "are also accepted here."
)


class _Command(click.Command):
    """A subcommand that also takes the global options after its name, as kubectl does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("epilog", _LATE_EPILOG)
        super().__init__(*args, **kwargs)
        self.params.extend(_global_options(late=True))

    def invoke(self, ctx: click.Context) -> Any:
        late = {name: ctx.params.pop(name, None) for name in _GLOBAL_NAMES}
        _apply_late_globals(ctx, late)
        return super().invoke(ctx)


class _Group(click.Group):
    command_class = _Command
    group_class = type  # subgroups (`sandbox`) are _Groups too: their commands take them as well


def _apply_late_globals(ctx: click.Context, late: dict[str, Any]) -> None:
    """Global options typed after the subcommand replace the ones before it (counts add up)."""
    app = ctx.find_object(App)
    if app is None:  # the group callback always runs first; nothing to override without it
        return
    from dataclasses import replace

    from gx10slots import console

    changes: dict[str, Any] = {
        name: value
        for name, value in late.items()
        if value is not None and name not in ("verbose", "quiet")
    }
    if "output" in changes:
        changes["output"] = changes["output"].lower()
    for name in ("kubeconfig", "context"):
        if name in changes:
            changes[name] = changes[name] or None  # an empty value is no value, as before it
    verbosity = app.options.verbosity + (late["verbose"] or 0) - (late["quiet"] or 0)
    if verbosity != app.options.verbosity:
        changes["verbosity"] = verbosity
        console.configure(verbosity)
    if changes:
        app.options = replace(app.options, **changes)


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="slots")
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: str,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    output: str,
    verbose: int,
    quiet: int,
) -> None:
    """Blue/green model slots on the GX10: deploy, smoke, flip, flip back.

    Production is served by one active slot (blue or green); one availability flag decides which.
    The other slot stays warm so that `slots flip-back` restores service in about a second.

    \b
    Exit codes: 0 done and verified; 1 a check failed (production unchanged or restored);
    2 usage or config error; 3 refused by a safety gate; 4 cluster/network error or unconfirmed
    state; 130 interrupted.
    """
    from gx10slots import console

    verbosity = verbose - quiet
    console.configure(verbosity)
    ctx.obj = App(
        GlobalOptions(
            config_path=config_path,
            kubeconfig=kubeconfig or None,
            context=context or None,
            namespace=namespace,
            output=cast("OutputFormat", output.lower()),  # one of OUTPUTS (click.Choice)
            verbosity=verbosity,
        )
    )


# The global options come first in `slots --help`, as they did when declared by decorators.
cli.params[:0] = _global_options(late=False)


@cli.command()
@click.option(
    "-w",
    "--watch",
    is_flag=True,
    help="Redraw on every change (slots, flag, leases) until Ctrl-C; on a pipe, or with -o "
    "json|yaml, one status after another.",
)
@click.pass_context
def status(ctx: click.Context, watch: bool) -> None:
    """Both slots, the flag, the fallback's protection, who holds the lock, and warnings."""
    from gx10slots.ops.status import status as read_status
    from gx10slots.render import status_text

    app = _app(ctx)
    if watch:
        _watch_status(app)
        return
    doc = read_status(app)
    if app.options.document:
        from gx10slots.render import emit

        emit(doc, app.options.output)
    else:
        click.echo(status_text(doc, wide=app.options.output == "wide"))


def _watch_status(app: App) -> None:
    """`status --watch`: on a terminal the screen is redrawn; on a pipe (or -o json|yaml) each
    change is printed after the last, stamped with its time. Ctrl-C ends it: exit 0."""
    from datetime import UTC, datetime

    from gx10slots.ops.statuswatch import watch_status
    from gx10slots.render import format_document, status_text

    output = app.options.output
    redraw = sys.stdout.isatty() and not app.options.document
    shown: list[str] = []

    def draw(doc: StatusResult) -> None:
        if app.options.document:
            text = format_document(doc, output).rstrip("\n")
            text = f"---\n{text}" if output == "yaml" else text
        else:
            text = status_text(doc, wide=output == "wide")
        if shown and shown[-1] == text:
            return  # a re-list or an unrelated change: nothing the operator would see differs
        shown[:] = [text]
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if redraw:
            # Home and clear, as `watch` does: the table stays in place, changing as it changes.
            sys.stdout.write(f"\x1b[H\x1b[2J{at}  slots status --watch (Ctrl-C to stop)\n\n")
        elif not app.options.document:
            sys.stdout.write(f"--- {at}\n")
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    try:
        watch_status(app, draw)
    except Interrupted:
        return  # Ctrl-C (or SIGTERM) is how a watch ends: nothing to undo, exit 0


def _safe(text: str) -> str:
    from gx10slots import scrub

    return scrub.safe(text, keep_newlines=True)


def _emit(app: App, document: Any, human: str) -> None:
    from gx10slots.render import emit

    if app.options.document:
        emit(document, app.options.output)
    else:
        # Summaries quote foreign text (model names, probe details): scrubbed for the terminal.
        click.echo(_safe(human))


def _emit_guarded(
    ctx: click.Context, app: App, result: Any, guarded: GuardResult | None, human: str
) -> None:
    """One document (the guard's outcome inside it); the guard's verdict is the exit code."""
    if guarded is None:
        _emit(app, result, human)
        return
    from gx10slots.render import guard_summary

    _emit(app, result, human + "\n" + guard_summary(guarded))
    if guarded.exit_code:
        ctx.exit(guarded.exit_code)


_REASON = click.option("--reason", metavar="TEXT", help="Why: recorded in history and annotations.")
_DRY_RUN = click.option("--dry-run", is_flag=True, help="Show the exact change; change nothing.")
_FORCE = click.option(
    "--force",
    is_flag=True,
    help="Emergency: skip the pre-flip probe and smoke freshness (never the lock or readiness).",
)


_BREAK_LOCK = click.option(
    "--break-lock",
    is_flag=True,
    help="Take over the lease gx10slots-lock if nobody renews it within its renew interval "
    "(about 10 s; a live holder is still refused). Says whose it was; recorded in history.",
)
_REPLACE_FALLBACK = click.option(
    "--replace-fallback",
    is_flag=True,
    help="Go ahead even if the slot is production's protected fallback (the slot that served "
    "before the last flip); recorded in history.",
)


_GUARD = click.option(
    "--guard",
    "guard_for",
    type=DURATION,
    metavar="DURATION",
    help="After the flip, guard the new active slot this long (see `slots guard`).",
)


def _guarded(
    app: App,
    flipped: FlipResult | None,
    guard_for: float | None,
    report_dir: str | None = None,
    *,
    break_lock: bool = False,
) -> GuardResult | None:
    """`--guard`: guard the slot the flip made active; what the guard did (None: no guard)."""
    if guard_for is None or flipped is None or not flipped.target:
        return None
    from gx10slots.guard.run import guard_after_flip

    return guard_after_flip(app, flipped, guard_for, report_dir=report_dir, break_lock=break_lock)


_RENAME = click.option(
    "--rename",
    is_flag=True,
    help="Flip even though the target does not serve every name production serves now "
    "(clients asking for a dropped name get 404).",
)


def _flip_command(
    mode: str,
    ctx: click.Context,
    force: bool,
    reason: str | None,
    dry_run: bool,
    guard_for: float | None = None,
    break_lock: bool = False,
    rename: bool = False,
) -> None:
    from dataclasses import replace

    from gx10slots.flip.run import flip as run_flip
    from gx10slots.render import flip_summary

    if dry_run and guard_for is not None:
        raise click.UsageError("--guard watches a real flip; it cannot go with --dry-run")
    app = _app(ctx)
    result = run_flip(
        app,
        mode,  # type: ignore[arg-type]
        force=force,
        reason=reason,
        dry_run=dry_run,
        break_lock=break_lock,
        rename=rename,
    )
    guarded = _guarded(app, result, guard_for, break_lock=break_lock)
    if guarded is not None:
        result = replace(result, guard=guarded)
    _emit_guarded(ctx, app, result, guarded, flip_summary(result))


@cli.command()
@_FORCE
@_RENAME
@_REASON
@_DRY_RUN
@_GUARD
@_BREAK_LOCK
@click.pass_context
def flip(
    ctx: click.Context,
    force: bool,
    rename: bool,
    reason: str | None,
    dry_run: bool,
    guard_for: float | None,
    break_lock: bool,
) -> None:
    """Make the standby active once its gates pass; the old slot stays warm."""
    _flip_command("flip", ctx, force, reason, dry_run, guard_for, break_lock, rename)


@cli.command("flip-back")
@_FORCE
@_REASON
@_DRY_RUN
@_GUARD
@_BREAK_LOCK
@click.pass_context
def flip_back(
    ctx: click.Context,
    force: bool,
    reason: str | None,
    dry_run: bool,
    guard_for: float | None,
    break_lock: bool,
) -> None:
    """Make the previous slot active again (refused unless it is ready)."""
    _flip_command("flip-back", ctx, force, reason, dry_run, guard_for, break_lock)


@cli.command()
@click.option(
    "--metrics-addr",
    default="127.0.0.1:9108",
    show_default=True,
    metavar="HOST:PORT",
    help="Where to serve Prometheus metrics (/metrics); port 0 picks a free one. In a pod: "
    "0.0.0.0:9108.",
)
@click.option(
    "--mode",
    type=click.Choice(["act", "observe"]),
    help="act: flip back on its own; observe: judge and say what it would do, change nothing "
    "[default: config guard.mode, else act].",
)
@click.pass_context
def controller(ctx: click.Context, metrics_addr: str, mode: str | None) -> None:
    """Run until stopped: guard every flip, keep both slots lightly probed, serve metrics.

    \b
    Replicas elect a leader through the Lease gx10slots-controller; only the leader acts. After
    every flip (by anyone) it guards the new active slot as `slots guard` does, with checks every
    controller.interval (default 3s), so a wedged slot is back on its warm fallback within about
    15 s; a manual flip restarts the watch on the new active slot. Between flips it runs a tiny
    generation on each running slot every controller.heartbeat (default 2m). SIGTERM or Ctrl-C
    stops it (exit 0), giving the Lease back.
    """
    import threading

    from gx10slots import console, stopping
    from gx10slots.controller.metrics import ControllerMetrics
    from gx10slots.controller.run import Controller, serve_metrics

    app = _app(ctx)
    chosen = mode or app.config.guard.mode
    metrics = ControllerMetrics()
    server = serve_metrics(metrics, metrics_addr)
    stop = threading.Event()
    runner = Controller(app, mode=chosen, metrics=metrics, stop=stop)  # type: ignore[arg-type]
    # Within a kubelet's grace period (30 s by default), whatever the main thread is doing.
    stopping.exit_within(STOP_GRACE_S, runner.elector.stop)
    try:
        runner.run()
    except Interrupted as exc:
        console.progress(f"controller stopped: {exc.message}")
    finally:
        stop.set()
        server.shutdown()


@cli.command()
@click.option(
    "--for",
    "window",
    type=DURATION,
    metavar="DURATION",
    help="How long to watch [default: config guard.window, else 10m].",
)
@click.option(
    "--interval",
    type=DURATION,
    metavar="DURATION",
    help="Time between checks; after a failed check a third of it, to confirm sooner "
    "[default: config guard.interval, else 30s].",
)
@click.option(
    "--failures",
    type=click.IntRange(min=1),
    metavar="N",
    help="Failed checks in a row that flip back [default: config guard.failures, else 3].",
)
@click.option(
    "--report-dir",
    metavar="DIR",
    help="Where the slot's smoke reports are and the guard report goes [config smoke.report_dir].",
)
@_BREAK_LOCK
@click.pass_context
def guard(
    ctx: click.Context,
    window: float | None,
    interval: float | None,
    failures: int | None,
    report_dir: str | None,
    break_lock: bool,
) -> None:
    """Watch the active slot after a flip; if it wedges or fails, flip back on its own.

    \b
    Each check: production must still be on the guarded slot (if someone else flipped, the
    guard stands down, exit 0); one known-answer generation through the production endpoint
    with its own timeout; where /metrics exist, requests running on a flat generation counter
    (a wedge); the error share of its recent probes; time to first token against the slot's
    smoke report. It holds only the Lease gx10slots-guard while watching (an announcement: while
    it is held, production's fallback stays protected), never the lock, so an operator's
    flip-back is never blocked; Ctrl-C changes nothing. --break-lock applies to the lock it
    takes to flip back.

    \b
    Exit 0: the window passed (or it stood down); 1: it tripped and production is back on the
    previous slot (verified); 3: refused, the previous slot is not warm.
    """
    from gx10slots.guard.loop import GuardRequest
    from gx10slots.guard.run import exit_code
    from gx10slots.guard.run import guard as run_guard
    from gx10slots.render import guard_summary

    app = _app(ctx)
    result = run_guard(
        app,
        GuardRequest(
            window_s=window,
            interval_s=interval,
            failures=failures,
            report_dir=report_dir,
            break_lock=break_lock,
        ),
    )
    _emit(app, result, guard_summary(result))
    code = exit_code(result)
    if code:
        ctx.exit(code)


@cli.command()
@click.option(
    "-l",
    "--limit",
    "limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    metavar="N",
    help="How many entries (`-n` is the namespace, as everywhere).",
)
@click.pass_context
def history(ctx: click.Context, limit: int) -> None:
    """The flip/deploy audit log, newest first."""
    from gx10slots.ops.history import history as read_history
    from gx10slots.render import emit, history_text

    app = _app(ctx)
    entries = read_history(app, limit)
    if app.options.document:
        emit(entries, app.options.output)
    else:
        click.echo(history_text(entries, wide=app.options.output == "wide"))


@cli.command()
@click.argument("slot", required=False, type=click.Choice(["blue", "green", "standby"]))
@_REASON
@_DRY_RUN
@_REPLACE_FALLBACK
@_BREAK_LOCK
@click.pass_context
def park(
    ctx: click.Context,
    slot: str | None,
    reason: str | None,
    dry_run: bool,
    replace_fallback: bool,
    break_lock: bool,
) -> None:
    """Scale a non-active slot (default: the standby) to zero to free memory.

    Refused (exit 3) for production's fallback while it is protected (flip.protect_fallback_for
    after a flip, and while a guard watches) unless --replace-fallback.
    """
    from gx10slots.ops.park import park as run_park
    from gx10slots.render import park_summary

    app = _app(ctx)
    result = run_park(
        app,
        slot,
        reason=reason,
        dry_run=dry_run,
        replace_fallback=replace_fallback,
        break_lock=break_lock,
    )
    _emit(app, result, park_summary(result))


@cli.command()
@click.argument(
    "slot",
    required=False,
    default="standby",
    type=click.Choice(["blue", "green", "active", "standby"]),
)
@click.option("--report-dir", metavar="DIR", help="Where reports go [config smoke.report_dir].")
@click.option(
    "--format",
    "formats",
    metavar="LIST",
    help="Report formats beside JSON: json,md,junit [config smoke.formats].",
)
@click.pass_context
def smoke(ctx: click.Context, slot: str, report_dir: str | None, formats: str | None) -> None:
    """Run the deep-liveness suite against SLOT (default: the standby) and record the result."""
    from gx10slots.ops.smoke import parse_formats, resolve_slot, smoke_slot
    from gx10slots.render import smoke_summary

    app = _app(ctx)
    wanted = parse_formats(formats)
    outcome = smoke_slot(app, resolve_slot(app, slot), report_dir=report_dir, formats=wanted)
    _emit(app, outcome, smoke_summary(outcome))
    if not outcome.passed:
        ctx.exit(1)


@cli.command()
@click.argument("model")
@click.option("--image", help="Container image (default: keep the slot's image).")
@click.option(
    "--served-name",
    metavar="NAME",
    help="Model name clients ask for (default: keep the active slot's name; MODEL when none). "
    "A new name keeps the old ones as aliases where the engine can serve several.",
)
@click.option("--env", "env", multiple=True, metavar="KEY=VALUE", help="Extra env (repeatable).")
@click.option(
    "--memory-gib",
    type=click.FloatRange(min=1),
    metavar="N",
    help="Memory budget: the container's request and limit, in GiB (written as whole MiB).",
)
@click.option(
    "--allow-unknown-memory",
    is_flag=True,
    help="Deploy even when the node's memory or the slot's budget is unknown (warns).",
)
@click.option(
    "--slot",
    type=click.Choice(["blue", "green"]),
    help="Target slot (default: the standby; never the active slot).",
)
@click.option("--flip", "do_flip", is_flag=True, help="Flip production to it when smoke passes.")
@click.option(
    "--timeout",
    "timeout",
    type=DURATION,
    default="20m",
    show_default=True,
    help="How long to wait for the rollout.",
)
@click.option("--report-dir", metavar="DIR", help="Where smoke reports go.")
@click.option("--format", "formats", metavar="LIST", help="Report formats beside JSON.")
@click.option("--park-on-failure", is_flag=True, help="Scale the standby to 0 if it fails.")
@click.option(
    "--rename",
    is_flag=True,
    help="Do not keep the names production serves now beside --served-name, and let --flip "
    "drop them (clients asking for a dropped name get 404).",
)
@_REASON
@_DRY_RUN
@_GUARD
@_REPLACE_FALLBACK
@_BREAK_LOCK
@click.pass_context
def deploy(
    ctx: click.Context,
    model: str,
    image: str | None,
    served_name: str | None,
    env: tuple[str, ...],
    memory_gib: float | None,
    allow_unknown_memory: bool,
    slot: str | None,
    do_flip: bool,
    timeout: float,
    report_dir: str | None,
    formats: str | None,
    park_on_failure: bool,
    rename: bool,
    reason: str | None,
    dry_run: bool,
    guard_for: float | None,
    replace_fallback: bool,
    break_lock: bool,
) -> None:
    """Put MODEL into the standby slot, wait for it, smoke it; --flip to switch production.

    Refused (exit 3) when the target is production's fallback while it is protected
    (flip.protect_fallback_for after a flip, and while a guard watches) unless
    --replace-fallback.
    """
    from dataclasses import replace

    from gx10slots.deploy.result import Deployed
    from gx10slots.deploy.run import DeployRequest
    from gx10slots.deploy.run import deploy as run_deploy
    from gx10slots.ops.smoke import parse_formats
    from gx10slots.render import deploy_summary

    if guard_for is not None and (not do_flip or dry_run):
        raise click.UsageError("--guard watches the flip: it needs --flip and no --dry-run")
    app = _app(ctx)
    request = DeployRequest(
        model=model,
        image=image,
        served_name=served_name,
        env=env,
        memory_gib=memory_gib,
        slot=slot,
        flip=do_flip,
        timeout_s=timeout,
        report_dir=report_dir,
        formats=parse_formats(formats),
        dry_run=dry_run,
        park_on_failure=park_on_failure,
        reason=reason,
        allow_unknown_memory=allow_unknown_memory,
        replace_fallback=replace_fallback,
        break_lock=break_lock,
        rename=rename,
    )
    if dry_run or app.options.verbosity < 0:
        result = run_deploy(app, request)
    else:
        from gx10slots.progress import Reporter

        # A live line on a terminal; timestamped lines and "still waiting" heartbeats on a pipe.
        with Reporter() as reporter:
            result = run_deploy(app, request, reporter)
    # After run_deploy, so the deploy's lease is released: the guard takes it only to flip back.
    flipped = result.flip if isinstance(result, Deployed) else None
    guarded = _guarded(app, flipped, guard_for, report_dir, break_lock=break_lock)
    if isinstance(result, Deployed) and guarded is not None:
        result = replace(result, guard=guarded)
    _emit_guarded(ctx, app, result, guarded, deploy_summary(result))


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script for SHELL: commands, options, slot names, -o formats.

    \b
    bash:  slots completion bash > ~/.slots-complete.bash
           echo '. ~/.slots-complete.bash' >> ~/.bashrc
    zsh:   slots completion zsh > ~/.slots-complete.zsh
           echo '. ~/.slots-complete.zsh' >> ~/.zshrc
    fish:  slots completion fish > ~/.config/fish/completions/slots.fish
    """
    from click.shell_completion import get_completion_class

    # Click's own completion: the script calls `slots` back with _SLOTS_COMPLETE set, and click
    # answers from the command tree (slot names are the choices of each slot argument/option).
    complete = get_completion_class(shell)
    assert complete is not None, "click ships bash, zsh and fish"
    click.echo(complete(cli, {}, "slots", "_SLOTS_COMPLETE").source(), nl=False)


@cli.group()
def sandbox() -> None:
    """A local simulated GX10 (Kubernetes API, node, slots, model servers) on loopback."""
    from gx10slots.sandbox import require_extra

    require_extra()


_SANDBOX_DIR = click.option(
    "--dir",
    "directory",
    envvar="SLOTS_SANDBOX_DIR",
    default=".sandbox",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the sandbox keeps kubeconfig, slots.yaml, sandbox.json and logs.",
)


def _sandbox_directory(directory: str) -> None:
    from gx10slots.fileio import writable_directory

    writable_directory(
        directory, "sandbox directory", hint="choose a writable directory with --dir"
    )


@sandbox.command("up")
@_SANDBOX_DIR
@click.option(
    "--engine",
    type=click.Choice(["fake", "llama-server", "llama-cpp"]),
    default="fake",
    show_default=True,
    help="fake: our fault-injecting server; llama-server: slots shaped for llama.cpp's "
    "llama-server, which serves the tiny-* models for real (llama-cpp: the same).",
)
@click.option(
    "--flag",
    type=click.Choice(["service-selector", "configmap", "httproute"]),
    default="service-selector",
    show_default=True,
    help="The availability flag production routing follows: the production Service's selector "
    "(through its EndpointSlices), the key of the ConfigMap gx10-flag (a router of its own), or "
    "the backendRef weights of the Gateway API HTTPRoute gx10-model (a Gateway of its own).",
)
@click.option(
    "--router-lag",
    metavar="DURATION|never",
    default="1s",
    show_default=True,
    help="How long production routing takes to follow a change of the flag or of the ready "
    "endpoints; never: a stuck router.",
)
@click.option("--detach", is_flag=True, help="Start in the background and return once ready.")
@click.pass_context
def sandbox_up(
    ctx: click.Context, directory: str, engine: str, flag: str, router_lag: str, detach: bool
) -> None:
    """Start the sandbox; with --detach, return once it is ready."""
    from gx10slots.render import emit
    from gx10slots.sandbox import cluster

    app = _app(ctx)
    _sandbox_directory(directory)
    lag = cluster.parse_router_lag(router_lag)
    if detach:
        info = cluster.start_detached(directory, engine=engine, flag=flag, router_lag_s=lag)
        if app.options.document:
            emit(info, app.options.output)
        else:
            click.echo(cluster.describe(directory, info))
        return
    cluster.run_foreground(
        directory, engine=engine, announce=click.echo, flag=flag, router_lag_s=lag
    )


@sandbox.command("down")
@_SANDBOX_DIR
@click.pass_context
def sandbox_down(ctx: click.Context, directory: str) -> None:
    """Stop the sandbox in DIR and every process it started."""
    from gx10slots.render import emit
    from gx10slots.sandbox import cluster

    result = cluster.stop(directory)
    options = _app(ctx).options
    if options.document:
        emit(result, options.output)
    else:
        click.echo(result["message"])


# -- the error boundary --------------------------------------------------------------------------


def _document_format(argv: Sequence[str]) -> str | None:
    """ "json" or "yaml" when -o asked for a document (before or after the subcommand: the last
    one wins, as click reads them), even when parsing failed before the option was read."""
    value = os.environ.get("SLOTS_OUTPUT", "")
    for index, arg in enumerate(argv):
        if arg in ("-o", "--output") and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith("--output="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-o") and len(arg) > 2 and not arg.startswith("--"):
            value = arg[2:]
    value = value.lower()
    return value if value in ("json", "yaml") else None


def _report(error: Explained, document: str | None) -> None:
    """The one way an error is shown: redacted and terminal-safe (its text may quote a server,
    an engine, a pod log or a library), as a document too with -o json or -o yaml."""
    from gx10slots import scrub

    if document:
        from gx10slots.render import emit

        emit({"error": error.to_dict()}, document)  # emit redacts every string
    click.echo(f"error: {scrub.safe(error.message, keep_newlines=True)}", err=True)
    if error.hint:
        click.echo(f"hint: {scrub.safe(error.hint, keep_newlines=True)}", err=True)


def _internal_error(exc: BaseException, document: str | None) -> int:
    """The last resort for an exception nothing expected: a bug of ours, or input we did not
    foresee. Said plainly, with the exception's type (no traceback: its frames may hold a
    credential or foreign text), how to get the details, and exit 1. Production state is not
    known to this boundary, so it says so rather than guessing."""
    from gx10slots import scrub

    detail = scrub.safe(f"{type(exc).__name__}: {exc}")
    detail = detail if len(detail) <= 300 else detail[:299] + "…"
    error = SlotsError(
        f"internal error ({detail})",
        hint="this is a bug in slots: please report it with the command you ran; "
        "SLOTS_DEBUG=1 shows the traceback; run `slots status` to see where production is",
    )
    error.kind = "internal"
    if os.environ.get("SLOTS_DEBUG") == "1":
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    _report(error, document)
    return 1


# How long `slots controller` may take to stop once asked (its watchdog: gx10slots.stopping).
STOP_GRACE_S = 10.0


def _on_sigterm(signum: int, frame: Any) -> NoReturn:
    from gx10slots import stopping

    stopping.requested()
    raise Interrupted("terminated by SIGTERM")


def _on_sigint(signum: int, frame: Any) -> NoReturn:
    from gx10slots import stopping

    stopping.requested()
    raise Interrupted("interrupted by Ctrl-C")


def main(argv: Sequence[str] | None = None) -> NoReturn:
    from gx10slots import cmdline

    args = list(sys.argv[1:] if argv is None else argv)
    document = _document_format(args)
    cmdline.set_command(args)  # what the lease shows its holder doing
    # SIGTERM and Ctrl-C unwind the same way, as Interrupted: `finally` blocks release the lease,
    # and every command says what is known (where production is, read back). Ctrl-C as Python's
    # KeyboardInterrupt would reach click first, which turns it into a bare "interrupted".
    # A SIGINT ignored by whoever started us (`nohup`, a background job) stays ignored.
    handlers = [(signal.SIGTERM, _on_sigterm)]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        handlers.append((signal.SIGINT, _on_sigint))
    previous = {signum: signal.signal(signum, handler) for signum, handler in handlers}
    try:
        code = _run(args, document)
    finally:
        # Run in-process (tests, a long-lived caller): leave the caller's handlers as they were.
        for signum, handler in previous.items():
            if handler is not None:  # None: installed outside Python, nothing to restore
                signal.signal(signum, handler)
    sys.exit(code)


def _run(args: list[str], document: str | None) -> int:
    try:
        # Without standalone mode, click returns the code of a `ctx.exit(code)` (smoke, guard).
        returned = cli.main(args=args, prog_name="slots", standalone_mode=False)
        code = returned if isinstance(returned, int) else 0
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        _report(Interrupted("interrupted"), document)
        code = 130
    except click.ClickException as exc:
        # Usage mistakes (bad option, bad value, unknown command) are exit 2 per the contract.
        error = UsageError(exc.format_message())
        if document:
            _report(error, document)
        else:
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                click.echo(exc.ctx.get_usage(), err=True)
            click.echo(f"error: {_safe(error.message)}", err=True)
            click.echo("Try 'slots --help' for help.", err=True)
        code = 2
    except (SlotsError, Interrupted) as exc:
        _report(exc, document)
        code = exc.exit_code
    except KeyboardInterrupt:
        _report(Interrupted("interrupted by Ctrl-C"), document)
        code = 130
    except BrokenPipeError:
        # `slots status | head`: the reader left; nothing to report.
        sys.stderr.close()
        code = 0
    except Exception as exc:  # noqa: BLE001  (the last-resort boundary: see _internal_error)
        code = _internal_error(exc, document)
    return code


if __name__ == "__main__":
    main()
