-- Dated working hours per agent (models/roster.py): time zone, weekly intervals with breaks
-- and split shifts, and date exceptions. NULL keeps the daily shift_start/shift_end hours.
ALTER TABLE agents ADD COLUMN IF NOT EXISTS roster jsonb;
