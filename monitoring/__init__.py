"""Watching what the model does once deployed: the prediction log of served traffic (`log`,
`records`, `writer`) and the drift report over it or over the batch script's output (`drift`)."""
