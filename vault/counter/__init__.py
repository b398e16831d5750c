"""Assisted mode: the town hall's counter. Agents open accounts for citizens who came in person,
receive mandates from them (as Aidants Connect does) and act under those mandates; every action
goes into the audit chain and onto the citizen's "Mes mandats"."""
