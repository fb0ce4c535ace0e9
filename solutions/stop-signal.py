import signal

from labkit import exercises
from labkit.exercises import kernel as tasks

# The child ignores every signal it may: only SIGKILL (end) and SIGSTOP (pause) cannot be ignored,
# and SIGCONT resumes a stopped process even when it is ignored.
my_signal = {"stopped": signal.SIGSTOP, "ended": signal.SIGKILL,
             "resumed": signal.SIGCONT}[exercises.target("stop-signal", tasks.SIGNAL_TASKS)]
