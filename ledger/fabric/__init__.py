"""Consortium mode: the custody ledger on a Hyperledger Fabric network.

``wire`` holds what the chaincode and the client must agree on (names, the error
encoding). ``client`` speaks to peers and orderers without the Gateway service;
``blocks`` parses the blocks they deliver, and ``protos`` types the generated protobuf
modules both use.
``store`` is the ``LedgerStore`` backend whose RFC 6962 log is derived from the blocks.
"""
