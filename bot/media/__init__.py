"""Images and audio: generation, transcription and the file formats they need."""
