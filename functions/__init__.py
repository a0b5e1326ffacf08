"""Trigger areas, one blueprint each: parse input -> call one service -> shape output."""
