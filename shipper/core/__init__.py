"""The bottom layer: the shared vocabulary every other layer speaks.

Index names (`names`), entity writes (`entities`), Event Grid events and workspaces (`events`). Pure:
no I/O, no Elasticsearch, no Azure SDK; it imports nothing of the shipper but `shipper.errors`.
"""
