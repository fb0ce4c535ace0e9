import signal

my_signal = signal.SIGSTOP  # pauses: the scheduler skips the process until SIGCONT
