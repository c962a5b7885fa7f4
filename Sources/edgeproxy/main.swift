print("edgeproxy: not yet wired")
