my_probe = 'nc -w 3 "$ADDR" "$PORT" -e true 2>/dev/null && echo reachable || echo unreachable'  # -e: end once connected
