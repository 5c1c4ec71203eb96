import { defineStore } from 'pinia';
import { ref, watch } from 'vue';
import type { Locale } from '@aiplat/plugin-sdk/web';
import { i18n, saveLocale } from '../i18n.ts';

type Theme = 'light' | 'dark';

function initialTheme(): Theme {
  const saved = localStorage.getItem('aiplat.theme');
  if (saved === 'light' || saved === 'dark') return saved;
  return window.matchMedia?.('(prefers-color-scheme: dark)').matches ? 'dark' : 'light';
}

/** The user's display preferences, kept in this browser. */
export const usePrefs = defineStore('prefs', () => {
  const locale = ref<Locale>(i18n.global.locale.value as Locale);
  const theme = ref<Theme>(initialTheme());
  const navCollapsed = ref(localStorage.getItem('aiplat.navCollapsed') === '1');

  const applyTheme = (value: Theme) => document.documentElement.classList.toggle('dark', value === 'dark');
  applyTheme(theme.value);
  saveLocale(locale.value);

  watch(locale, (value) => {
    i18n.global.locale.value = value;
    saveLocale(value);
  });
  watch(theme, (value) => {
    applyTheme(value);
    localStorage.setItem('aiplat.theme', value);
  });
  watch(navCollapsed, (value) => localStorage.setItem('aiplat.navCollapsed', value ? '1' : '0'));

  return { locale, theme, navCollapsed };
});
