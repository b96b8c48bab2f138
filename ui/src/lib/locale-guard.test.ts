import { describe, expect, it } from 'vitest';
import { usableLanguage } from './locale-guard';

describe('usableLanguage', () => {
  it('keeps a valid tag', () => {
    expect(usableLanguage('de-DE')).toBe('de-DE');
  });
  it('replaces what a POSIX locale turns into, so the UI can start', () => {
    expect(usableLanguage('c.utf-8')).toBe('en-US');
    expect(usableLanguage('C')).toBe('en-US');
    expect(usableLanguage('')).toBe('en-US');
    expect(usableLanguage(undefined)).toBe('en-US');
  });
});
