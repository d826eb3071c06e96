import { useEffect, useState } from 'preact/hooks';
import { parseHash, type Route } from './lib/route';
import { Header } from './ui/common';
import { ConsolePage, CreatePage } from './ui/host';
import { JoinPage } from './ui/join';
import { PlayPage } from './ui/play';
import { ScreenPage } from './ui/screen';

const TITLES: Record<Route['page'], string> = {
  home: 'Join a quiz · Podium',
  join: 'Join a quiz · Podium',
  play: 'Playing · Podium',
  host: 'Create a quiz · Podium',
  console: 'Host console · Podium',
  screen: 'Big screen · Podium',
  not_found: 'Not found · Podium',
};

export function App() {
  const [route, setRoute] = useState<Route>(() => parseHash(location.hash));
  useEffect(() => {
    const on = () => setRoute(parseHash(location.hash));
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  useEffect(() => {
    document.title = TITLES[route.page];
  }, [route.page]);
  switch (route.page) {
    case 'home':
      return <JoinPage />;
    case 'join':
      return <JoinPage code={route.code} />;
    case 'play':
      return <PlayPage key={route.quizId} quizId={route.quizId} />;
    case 'host':
      return <CreatePage />;
    case 'console':
      return <ConsolePage key={route.quizId} quizId={route.quizId} handoff={route.handoff} />;
    case 'screen':
      return <ScreenPage key={route.quizId} quizId={route.quizId} code={route.code} />;
    case 'not_found':
      return (
        <>
          <Header />
          <main id="main" class="narrow">
            <h1>Page not found</h1>
            <a href="#/">Go to the start</a>
          </main>
        </>
      );
  }
}
