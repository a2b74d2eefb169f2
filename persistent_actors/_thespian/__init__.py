"""The thespian actors that run everything: guardian, actor hosts, plugin hosts, event stream."""
