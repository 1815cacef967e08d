# kvc_events: an Ansible callback that writes one JSON object per line to the
# file descriptor in $KVC_EVENTS_FD, for kvc-peer's job runner (peer/job_runner.c):
# how many tasks a play has, each task as it starts, each host's result, and
# the final stats. It prints nothing itself; the human output stays on stdout
# (the job's log). Results carry only the fields the runner reads (changed,
# failed, unreachable, a one-line message), never the module's arguments or
# output, and nothing at all for no_log tasks.
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = """
    name: kvc_events
    type: aggregate
    short_description: JSON lines of task progress for kvc-peer's job runner
    description:
      - Writes task starts, results and stats as JSON lines to the file
        descriptor named by the KVC_EVENTS_FD environment variable.
    requirements:
      - KVC_EVENTS_FD set to a writable file descriptor
"""

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "kvc_events"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self._out = None
        fd = os.environ.get("KVC_EVENTS_FD")
        if fd and fd.isdigit():
            try:
                self._out = os.fdopen(int(fd), "w", buffering=1)
            except OSError:
                self._out = None

    def _emit(self, obj):
        if self._out is not None:
            self._out.write(json.dumps(obj, separators=(",", ":")) + "\n")

    def v2_playbook_on_play_start(self, play):
        n = 0
        try:
            for block in play.compile():
                n += len([t for t in block.block if getattr(t, "action", "") != "meta"])
        except Exception:  # counting is a hint only
            n = 0
        self._emit({"event": "play", "name": play.get_name(), "tasks": n})

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._emit({"event": "task", "name": task.get_name()[:150]})

    def _result(self, kind, result):
        r = result._result
        msg = ""
        if not r.get("_ansible_no_log") and not result._task.no_log:
            msg = r.get("msg") or r.get("stderr") or ""
            if not isinstance(msg, str):
                msg = json.dumps(msg)
        self._emit({"event": kind, "host": result._host.get_name(),
                    "task": result._task.get_name()[:150],
                    "changed": bool(r.get("changed")), "msg": msg.splitlines()[0][:200] if msg else ""})

    def v2_runner_on_ok(self, result):
        self._result("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result("ignored" if ignore_errors else "failed", result)

    def v2_runner_on_unreachable(self, result):
        self._result("unreachable", result)

    def v2_runner_on_skipped(self, result):
        self._emit({"event": "skipped", "host": result._host.get_name(),
                    "task": result._task.get_name()[:150]})

    def v2_playbook_on_stats(self, stats):
        hosts = {}
        for h in sorted(stats.processed.keys()):
            s = stats.summarize(h)
            hosts[h] = {"ok": s["ok"], "changed": s["changed"], "failures": s["failures"],
                        "unreachable": s["unreachable"]}
        self._emit({"event": "stats", "hosts": hosts})
