"""Video in and out, with no tracking in it: reading a user's video file (PyAV) or frame folder
(`source`), drawing boxes and captions (`draw`), writing a browser-playable video and small GIFs
(`encode`). `evaluation/` uses these for `track` and for evaluate's result gifs."""
