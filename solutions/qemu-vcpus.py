exercise_vcpus = exercise.target()   # this learner's target, printed above the exercise
exercise_command = "nproc"           # the guest counts the CPUs it sees
