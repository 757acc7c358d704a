"""Publishing: the wire schema, overlays, the ZeroMQ publisher and the reference subscriber.

`ddavs_rt.publish.schema` (FrameHeader, encode_message, decode_message) and
`ddavs_rt.publish.overlay` need only numpy and OpenCV; `publisher` and `subscriber` add pyzmq.
"""
