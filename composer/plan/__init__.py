"""Planning: what must change on the host for the project to be as its manifest says."""
