get_ipython().system(f"virsh -c {conn.uri} suspend {keeper.name} > /dev/null 2>&1")
