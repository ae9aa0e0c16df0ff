"""The control loop and its parts (docs/architecture.md: controller/control).

`loop.Controller` runs one treatment; `actuator` turns setpoints into commands, `steps` holds
self-test and priming, `operator` the request queue and auto-resume, `accounting` volumes and
statistics, `checkpoint` and `resume` what a resumed run needs, `summary` the outcome, and
`events` the view, events, bus and request port that every edge uses.
"""

from controller.control.accounting import ACCOUNTED, Volumes
from controller.control.events import EXPIRED, Attachment, Edge, EventBus, RequestPort, View
from controller.control.guard import Interrupted
from controller.control.loop import Controller
from controller.control.resume import ResumeDeclined, ResumeFailed
from controller.control.steps import StepFailed

__all__ = [
    "ACCOUNTED",
    "EXPIRED",
    "Attachment",
    "Controller",
    "Edge",
    "EventBus",
    "Interrupted",
    "RequestPort",
    "ResumeDeclined",
    "ResumeFailed",
    "StepFailed",
    "View",
    "Volumes",
]
