// Imported first by main.ts, so it runs before any module that formats numbers.
//
// WebKitGTK takes navigator.language from LANG, and a POSIX locale (LANG=C or
// C.UTF-8, the default on many servers and containers) comes out as a tag that
// Intl rejects. uPlot builds an Intl.NumberFormat from navigator.language when its
// module loads, so without this the whole popover fails to start and stays blank.
export function usableLanguage(language: string | undefined): string {
  if (!language) return 'en-US';
  try {
    new Intl.NumberFormat(language);
    return language;
  } catch {
    return 'en-US';
  }
}

const chosen = usableLanguage(typeof navigator === 'undefined' ? undefined : navigator.language);
if (typeof navigator !== 'undefined' && chosen !== navigator.language) {
  Object.defineProperty(navigator, 'language', { value: chosen, configurable: true });
}
