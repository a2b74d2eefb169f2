"""The thespian actors that run everything: guardian, entity hosts, plugin hosts, event stream."""
