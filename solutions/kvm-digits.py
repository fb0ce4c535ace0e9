my_guest = r"""
.intel_syntax noprefix
# Print 0123456789 and a newline on the serial port, then halt.
start:
    mov dx, SERIAL_PORT     # COM1's data register
    mov al, '0'             # the first digit
next:
    out dx, al              # one port exit per character
    inc al
    cmp al, '9'
    jbe next                # again while al <= '9'
    mov al, '\n'
    out dx, al
    hlt
"""
