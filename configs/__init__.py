"""Shipped experiment configs, installed as package data (``uservec.configs``)."""
