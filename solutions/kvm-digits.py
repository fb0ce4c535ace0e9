from labkit.exercises import kvm as _digits

_first, _last = _digits.digits_target()[0], _digits.digits_target()[-2]
my_guest = rf"""
.intel_syntax noprefix
# Print your digits on the serial port, one `out` per character, then a newline, then halt.
start:
    mov dx, SERIAL_PORT     # COM1's data register
    mov al, '{_first}'             # the first digit
next:
    out dx, al              # one port exit per character
    inc al
    cmp al, '{_last}'
    jbe next                # again while al <= the last digit
    mov al, '\n'
    out dx, al
    hlt
"""
